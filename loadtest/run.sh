#!/usr/bin/env bash
# Broadcast fan-out, switchyard against its peers, in one run (the servers
# are listed in common.sh; SERVERS picks some, in order):
#   - switchyard (JSON subscribers, in-memory broker), and switchyard-redis
#     (two nodes over Redis: publisher on one, subscribers on the other)
#   - bare-broadcast: hyper + fastwebsockets, frames encoded once, writes
#     coalesced, no gateway logic (the ceiling of our stack)
#   - raw-broadcast: tokio alone, hand-written handshake and framing, one
#     broadcast ring, one contiguous write per batch (the floor of a Rust
#     fan-out)
#   - Node `ws` broadcast (the classic baseline)
#   - Socket.IO, two processes with @socket.io/redis-adapter
# Alternating per rate and round, the servers pinned to CPU 0 and the
# generator to CPU 1; results in target/loadtest/results.md, an SVG chart
# of p99 against rate in target/loadtest/broadcast.svg.
#
#   loadtest/run.sh [subscribers] [duration] [rates...]
#   loadtest/run.sh 100 10s 2000 5000 10000
#   SERVERS="switchyard node-ws" ROUNDS=1 loadtest/run.sh 100 3s 2000
# PUBLISH_VIA=fcall or http: switchyard's publications come as a backend
# sends them (FCALL on Redis: switchyard-redis only; the HTTP API) instead
# of from a client; peers always publish from a client.
# LATE_LIMIT (30s): how long deliveries may trail the last publication
# before they count as lost (saturated peers can be minutes behind).
# Slow consumers (scenario 6): STALLED_PERCENT of the subscribers never
# read; MAX_QUEUE_BYTES=1048576 gives switchyard its default queue bound.
#   STALLED_PERCENT=5 MAX_QUEUE_BYTES=1048576 loadtest/run.sh 100 10s 2000
# The Pusher door against sockudo (publications through the Pusher HTTP API
# on both; REFERENCE names the server the ratios are of):
#   SERVERS="switchyard-pusher sockudo" REFERENCE=switchyard-pusher loadtest/run.sh 100 5s 2000 5000 10000
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-2}
payload=${PAYLOAD:-128}
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
take_args 100 10s "1000 5000" "$@"
subscribers=$size

rm -f "$out"/broadcast-*.json "$out/results.md" "$out/shards.md"
for round in $(seq "$rounds"); do
  for rate in "${rates[@]}"; do
    port=9100
    for server in ${SERVERS:-switchyard raw bare node-ws socketio}; do
      port=$((port + 1))
      read -r pids url publish_url target scrape < <(start_server "$server" "$port")
      via=$(publish_via "$server" "$port")
      # shellcheck disable=SC2086 # $via and scrape_args are empty or two words
      taskset -c 1 target/release/switchyard-loadtest --url "$url" --publish-url "$publish_url" --target "$target" \
        $via $(scrape_args "$scrape") --stalled-percent "${STALLED_PERCENT:-0}" --late-limit "${LATE_LIMIT:-30s}" \
        --subscribers "$subscribers" --rate "$rate" --payload "$payload" --duration "$duration" \
        --server-pid "$pids" --label "$server r$round" --json "$out/broadcast-$server-$rate-r$round.json" \
        --results "$out/results.md" | tail -n 1
      shard_stats "$server" "$port" "$server r$round $rate/s"
      stop_server "$pids"
    done
  done
done
echo
echo "Ratios, switchyard against each server in the same round:"
target/release/switchyard-loadtest --scenario compare --reference "${REFERENCE:-switchyard}" "$out"/broadcast-*.json | tee "$out/ratios.md"
target/release/switchyard-loadtest --scenario chart --chart "$out/broadcast.svg" \
  --title "Broadcast to $subscribers subscribers, $payload B: p99 against offered rate" "$out"/broadcast-*.json
echo "results: $out/results.md, ratios: $out/ratios.md, chart: $out/broadcast.svg"
