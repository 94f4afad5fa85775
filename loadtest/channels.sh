#!/usr/bin/env bash
# Many channels (scenario 2), switchyard against Socket.IO in one run:
# N clients, each on a personal channel and a 10-member group channel;
# publications at RATE per second alternate between a group and a personal
# channel; CHURN percent of the clients per minute leave and come back.
# Servers on CPU 0, generator on CPU 1; results in
# target/loadtest/channels-results.md.
#
#   loadtest/channels.sh [clients] [duration] [rates...]
#   CHURN=2 loadtest/channels.sh 10000 10s 2000 10000
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-2}
churn=${CHURN:-0}
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
take_args 10000 10s "2000 10000" "$@"
clients=$size

results="$out/channels-results.md"
rm -f "$out"/channels-*.json "$results" "$out/shards.md"
for round in $(seq "$rounds"); do
  for rate in "${rates[@]}"; do
    port=9130
    for server in ${SERVERS:-switchyard switchyard-redis socketio}; do
      port=$((port + 1))
      read -r pids url publish_url target _ < <(start_server "$server" "$port")
      taskset -c 1 target/release/switchyard-loadtest --scenario channels --url "$url" --publish-url "$publish_url" \
        --target "$target" --connections "$clients" --rate "$rate" --duration "$duration" --churn "$churn" \
        --server-pid "$pids" --label "$server r$round" --json "$out/channels-$server-$rate-r$round.json" \
        --results "$results" | tail -n 1
      shard_stats "$server" "$port" "$server r$round $rate/s"
      stop_server "$pids"
    done
  done
done
echo
echo "Ratios, switchyard against each server in the same round:"
target/release/switchyard-loadtest --scenario compare "$out"/channels-*.json | tee "$out/channels-ratios.md"
echo "results: $results"
