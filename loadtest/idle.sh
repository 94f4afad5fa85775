#!/usr/bin/env bash
# Idle footprint and connection storm, switchyard against its peers in one
# run: N clients (spread over 8 source addresses per generator process) connect and subscribe as
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
# Generator processes (each may hold at most 20,000 files).
processes=${PROCESSES:-2}
# Heartbeats every 5 s, so that the idle figure includes them.
PING_INTERVAL=5s
# shellcheck source=loadtest/common.sh
. loadtest/common.sh

echo "| run | connections | failed | alive after hold | connects/s | connects per server CPU-s | p99 handshake+subscribe ms | server RSS KiB/conn | kernel KiB/conn | total KiB/conn | server cores per 10k idle |" >"$out/idle-results.md"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" >>"$out/idle-results.md"
for round in $(seq "$rounds"); do
  port=9110
  for server in ${SERVERS:-switchyard raw bare node-ws socketio}; do
    port=$((port + 1))
    read -r pids url _ target _ backend < <(start_server "$server" "$port")
    offer=0
    [ "$server" = switchyard-deflate ] && offer=1
    SWITCHYARD_LOADTEST_OFFER_DEFLATE=$offer taskset -c 1 target/release/switchyard-loadtest --scenario idle --url "$url" --target "$target" \
      --connections "$connections" --processes "$processes" --hold "$hold" --server-pid "$pids" \
      --label "$server r$round" --json "$out/idle-$server-r$round.json" >/dev/null
    python3 -c "
import json,sys; r=json.load(open('$out/idle-$server-r$round.json'))
kib=lambda b: '-' if b is None else f'{b/1024:.1f}'
num=lambda v, f: '-' if v is None else format(v, f)
print(f\"| {r['label']} | {r['connections']} | {r['failed']} | {r['alive_after_hold']} | {r['connects_per_second']:.0f} | {num(r['connects_per_server_cpu_second'], '.0f')} | {r['handshake_subscribe_ms']['p99']:.1f} | {kib(r['server_rss_bytes_per_connection'])} | {kib(r['kernel_bytes_per_connection'])} | {kib(r['bytes_per_connection'])} | {num(r['server_cores_per_10k_idle'], '.3f')} |\")
" | tee -a "$out/idle-results.md"
    stop_server "$pids"
    [ -z "${backend:-}" ] || stop_server "$backend"
  done
done
