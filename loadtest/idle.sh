#!/usr/bin/env bash
# Idle footprint and connection storm, switchyard against its peers in one
# run: N clients (spread over 8 source addresses) connect and subscribe as
# fast as each server takes them, then idle with heartbeats on; memory per
# connection = server RSS growth + its half of the kernel's TCP memory.
# Server on CPU 0, generator on CPU 1.
#
#   loadtest/idle.sh [connections] [hold]
#   loadtest/idle.sh 15000 20s
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-15000}
hold=${2:-20s}
rounds=${ROUNDS:-2}
# One process may hold at most 20,000 files here (the hard limit).
ulimit -n "$(ulimit -Hn)"
# shellcheck source=loadtest/common.sh
. loadtest/common.sh

start() {
  case "$1" in
    switchyard)
      # Heartbeats on, every 5 s, so that the idle figure includes them.
      SWITCHYARD_CLIENT__PING_INTERVAL=5s SWITCHYARD_CLIENT__COMMANDS_PER_SECOND=100000000 \
        SWITCHYARD_CLIENT__COMMANDS_BURST=100000000 RUST_LOG=warn \
        taskset -c 0 target/release/switchyard serve --listen 127.0.0.1:9111 >"$out/idle-switchyard.log" 2>&1 &
      echo "9111 ws://127.0.0.1:9111/ws switchyard-json" ;;
    bare)
      taskset -c 0 target/release/bare-broadcast 127.0.0.1:9112 >"$out/idle-bare.log" 2>&1 &
      echo "9112 ws://127.0.0.1:9112/ plain" ;;
    node-ws)
      (cd "$out" && NODE_PATH="$PWD/node_modules" taskset -c 0 node "$OLDPWD/loadtest/peers/ws-broadcast.js" 127.0.0.1 9113 >idle-node-ws.log 2>&1) &
      echo "9113 ws://127.0.0.1:9113/ plain" ;;
  esac
}

for round in $(seq "$rounds"); do
  for server in switchyard bare node-ws; do
    read -r port url target < <(start "$server")
    for _ in $(seq 100); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.1; done
    pid=$(listener_pid "$port")
    taskset -c 1 target/release/switchyard-loadtest --scenario idle --url "$url" --target "$target" \
      --connections "$connections" --hold "$hold" --server-pid "$pid" --label "$server r$round" \
      --json "$out/idle-$server-r$round.json" >/dev/null
    python3 -c "
import json,sys; r=json.load(open('$out/idle-$server-r$round.json'))
kib=lambda b: '-' if b is None else f'{b/1024:.1f}'
print(f\"| {r['label']} | {r['connections']} | {r['failed']} | {r['alive_after_hold']} | {r['connects_per_second']:.0f} | {r['handshake_subscribe_ms']['p99']:.1f} | {kib(r['server_rss_bytes_per_connection'])} | {kib(r['kernel_bytes_per_connection'])} | {kib(r['bytes_per_connection'])} |\")
" | tee -a "$out/idle-results.md"
    kill "$pid" 2>/dev/null || true
    while ss -Hltn "sport = :$port" | grep -q .; do sleep 0.1; done
  done
done
