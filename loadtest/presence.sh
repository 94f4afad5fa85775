#!/usr/bin/env bash
# Presence at scale (scenario 7), two processes over one Redis pinned to
# CPU 0, the generator on CPU 1, in one run:
#   - presence: MEMBERS (default 10,000) clients on one channel, half on
#     each process; "who is in it" asked for DURATION in a closed loop,
#     alternating processes, each answer timed and checked to list every
#     member: switchyard's `presence` (a `presence` namespace; every tenth
#     question `presence_stats`) against Socket.IO's
#     `io.in(room).fetchSockets()` over @socket.io/redis-adapter;
#   - join/leave (switchyard): 1,000 members on a `join_leave` channel;
#     CYCLES (default 200) subscribe/unsubscribe cycles; deliveries and
#     broker messages per event from both nodes' metrics.
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
port=9200
for server in ${SERVERS:-switchyard-redis socketio}; do
  port=$((port + 1))
  read -r pids url publish_url target scrape < <(start_server "$server" "$port")
  taskset -c 1 target/release/switchyard-loadtest --scenario presence --url "$url" --publish-url "$publish_url" \
    --target "$target" --connections "$members" --channel room:big --duration "$duration" \
    --label "$server presence $members" --json "$out/presence-$server-$members.json" | tail -n 25
  if [ "$server" = switchyard-redis ]; then
    taskset -c 1 target/release/switchyard-loadtest --scenario join-leave --url "$url" --publish-url "$publish_url" \
      --connections 1000 --channel live:big --rate "$cycles" --scrape "$scrape" --label "join-leave 1000" \
      --json "$out/join-leave-1000.json" | tail -n 20
  fi
  stop_server "$pids"
done
echo "reports: $out/presence-*-$members.json $out/join-leave-1000.json"
