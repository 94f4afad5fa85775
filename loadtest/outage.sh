#!/usr/bin/env bash
# Outages (scenario 6): two switchyard nodes over one Redis, subscribers
# on one node, the publisher on the other, on a channel whose namespace
# keeps history; a third of the way in, Redis is killed (SIGKILL) and
# restarted empty on the same port a second later. Publications refused
# while it is down (error 108) are owed to no one; every accepted one must
# reach every subscriber. Servers on CPU 0, generator on CPU 1.
#
#   loadtest/outage.sh [subscribers] [duration] [rates...]
#   loadtest/outage.sh 100 15s 2000
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
take_args 100 15s 2000 "$@"
subscribers=$size

results="$out/outage-results.md"
rm -f "$results"
seconds=${duration%s}
for rate in "${rates[@]}"; do
  port=9150
  redis=$((port + 1000))
  export SWITCHYARD_NAMESPACES__HIST__HISTORY_SIZE=100000 SWITCHYARD_NAMESPACES__HIST__HISTORY_TTL=10m
  read -r pids url publish_url target scrape < <(start_server switchyard-redis "$port")
  redis_pid=${pids##*,}
  (
    sleep $((seconds / 3))
    kill -9 "$redis_pid"
    sleep 1
    start_redis "$redis"
  ) &
  outage=$!
  # shellcheck disable=SC2046 # scrape_args is empty or two words
  taskset -c 1 target/release/switchyard-loadtest --url "$url" --publish-url "$publish_url" --target "$target" \
    $(scrape_args "$scrape") --channel hist:bench --subscribers "$subscribers" --rate "$rate" --duration "$duration" \
    --server-pid "${pids%,*}" --label "switchyard-redis outage" --json "$out/outage-$rate.json" --results "$results" | tail -n 1
  wait "$outage"
  python3 -c "import json; r = json.load(open('$out/outage-$rate.json')); print(f\"refused (error replies): {r['publish_errors']}\")"
  stop_server "${pids%,*},$(listener_pid "$redis")"
done
echo "results: $results"
