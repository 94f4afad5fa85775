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

echo "| server | run | subscribers | rate/s | payload B | deliveries/s | lost | server CPU s | deliveries per CPU-s | p50 ms | p99 ms | p99.9 ms | max ms |" >"$out/results.md"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" >>"$out/results.md"
for round in $(seq "$rounds"); do
  for rate in "${rates[@]}"; do
    port=9100
    for server in ${SERVERS:-switchyard bare node-ws}; do
      port=$((port + 1))
      read -r pid url target < <(start_server "$server" "$port")
      row=$(taskset -c 1 target/release/switchyard-loadtest --url "$url" --target "$target" \
        --subscribers "$subscribers" --rate "$rate" --payload "$payload" --duration "$duration" \
        --server-pid "$pid" --label "r$round" --json "$out/$server-$rate-r$round.json" | tail -n 1)
      echo "| $server ${row#| }" | tee -a "$out/results.md"
      stop_server "$pid" "$port"
    done
  done
done
echo "results: $out/results.md"
