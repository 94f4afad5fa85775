#!/usr/bin/env bash
# Presence at scale (scenario 7): two switchyard nodes over one Redis,
# pinned to CPU 0, the generator on CPU 1.
#   - presence: MEMBERS (default 10,000) clients on one channel of a
#     `presence` namespace, half on each node; `presence` and
#     `presence_stats` answers timed for DURATION, alternating nodes;
#   - join/leave: 1,000 members on a `join_leave` channel; CYCLES (default
#     200) subscribe/unsubscribe cycles; deliveries and broker messages per
#     event from both nodes' metrics.
# Reports in target/loadtest/presence-*.json.
#
#   loadtest/presence.sh [members] [duration] [cycles]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
take_args 10000 10s "200" "$@"
members=$size
cycles=${rates[0]}

export SWITCHYARD_NAMESPACES__ROOM__PRESENCE=true
export SWITCHYARD_NAMESPACES__LIVE__JOIN_LEAVE=true
read -r pids url publish_url target scrape < <(start_server switchyard-redis 9201)
taskset -c 1 target/release/switchyard-loadtest --scenario presence --url "$url" --publish-url "$publish_url" \
  --connections "$members" --channel room:big --duration "$duration" --label "presence $members" \
  --json "$out/presence-$members.json" | tail -n 20
taskset -c 1 target/release/switchyard-loadtest --scenario join-leave --url "$url" --publish-url "$publish_url" \
  --connections 1000 --channel live:big --rate "$cycles" --scrape "$scrape" --label "join-leave 1000" \
  --json "$out/join-leave-1000.json" | tail -n 20
stop_server "$pids"
echo "target: $target; reports: $out/presence-$members.json $out/join-leave-1000.json"
