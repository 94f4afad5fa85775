#!/usr/bin/env bash
# Broadcast fan-out, switchyard against its peers, in one run:
#   - switchyard (JSON subscribers, in-memory broker)
#   - bare-broadcast: hyper + fastwebsockets, frames encoded once, writes
#     coalesced, no gateway logic (the ceiling of our stack)
#   - Node `ws` broadcast (the classic baseline)
# Alternating A B C per rate and round, the server pinned to CPU 0 and the
# generator to CPU 1; results in target/loadtest/results.md.
#
#   loadtest/run.sh [subscribers] [duration] [rates...]
#   loadtest/run.sh 100 10s 2000 5000 10000
set -euo pipefail
cd "$(dirname "$0")/.."

subscribers=${1:-100}
duration=${2:-10s}
shift 2 || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(1000 5000)
rounds=${ROUNDS:-2}
payload=${PAYLOAD:-128}
# shellcheck source=loadtest/common.sh
. loadtest/common.sh

start_server() {
  case "$1" in
    switchyard)
      SWITCHYARD_CLIENT__COMMANDS_PER_SECOND=100000000 SWITCHYARD_CLIENT__COMMANDS_BURST=100000000 \
        SWITCHYARD_CLIENT__MAX_QUEUE_BYTES=67108864 RUST_LOG=warn \
        taskset -c 0 target/release/switchyard serve --listen 127.0.0.1:9101 >"$out/switchyard.log" 2>&1 &
      echo "$! ws://127.0.0.1:9101/ws switchyard-json" ;;
    bare)
      taskset -c 0 target/release/bare-broadcast 127.0.0.1:9102 >"$out/bare.log" 2>&1 &
      echo "$! ws://127.0.0.1:9102/ plain" ;;
    node-ws)
      (cd "$out" && NODE_PATH="$PWD/node_modules" taskset -c 0 node "$OLDPWD/loadtest/peers/ws-broadcast.js" 127.0.0.1 9103 >node-ws.log 2>&1) &
      echo "$! ws://127.0.0.1:9103/ plain" ;;
  esac
}

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened" >&2; exit 1
}

echo "| server | run | subscribers | rate/s | payload B | deliveries/s | lost | server CPU s | deliveries per CPU-s | p50 ms | p99 ms | p99.9 ms | max ms |" >"$out/results.md"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" >>"$out/results.md"
for round in $(seq "$rounds"); do
  for rate in "${rates[@]}"; do
    for server in switchyard bare node-ws; do
      read -r pid url target < <(start_server "$server")
      port=${url:15:4}
      wait_port "$port"
      # The process that serves the port (node runs under a subshell).
      spid=$(listener_pid "$port")
      row=$(taskset -c 1 target/release/switchyard-loadtest --url "$url" --target "$target" \
        --subscribers "$subscribers" --rate "$rate" --payload "$payload" --duration "$duration" \
        --server-pid "$spid" --label "r$round" --json "$out/$server-$rate-r$round.json" | tail -n 1)
      echo "| $server ${row#| }" | tee -a "$out/results.md"
      kill "$spid" "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      while ss -Hltn "sport = :$port" | grep -q .; do sleep 0.1; done
    done
  done
done
echo "results: $out/results.md"
