#!/usr/bin/env bash
# Many history channels on one node, and Redis restarted under them: one
# node over one Redis, CONNECTIONS x CHANNELS_PER_CLIENT history channels
# subscribed (100,000 by default) and published once each; then a probe
# channel with one subscriber takes RATE publications per second by FCALL
# while Redis is killed (SIGKILL) and restarted empty. Reports how long the
# node's catch-up of every channel took and the probe's latency before,
# during and after it. Node and Redis on CPU 0, generator on CPU 1.
#
#   loadtest/catch_up.sh [connections] [channels per client] [rate] [duration]
#   loadtest/catch_up.sh 800 125 1000 25s
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-800}
per_client=${2:-125}
rate=${3:-1000}
duration=${4:-25s}
# shellcheck source=loadtest/common.sh
. loadtest/common.sh

port=9170
redis=$((port + 1000))
# REDIS_CPU=1 puts Redis beside the generator instead of beside the node,
# to tell the node's share of the probe's latency from Redis'.
start_redis_on() {
  taskset -c "${REDIS_CPU:-0}" redis-server --bind 127.0.0.1 --port "$1" --save "" --appendonly no \
    >"$out/redis-$1.log" 2>&1 &
}
start_redis_on "$redis"
wait_port "$redis"
# Pings far apart: the ballast clients only read.
PING_INTERVAL=300s SWITCHYARD_BROKER__REDIS_URL="redis://127.0.0.1:$redis" \
  SWITCHYARD_NAMESPACES__HIST__HISTORY_SIZE=100 SWITCHYARD_NAMESPACES__HIST__HISTORY_TTL=10m \
  start_switchyard "$port"
wait_port "$port"
node=$(listener_pid "$port")
log="$out/catch-up.log"
taskset -c 1 target/release/switchyard-loadtest --scenario catch-up --url "ws://127.0.0.1:$port/ws" \
  --target switchyard-json --connections "$connections" --channels-per-client "$per_client" \
  --publish-to "127.0.0.1:$redis" --scrape "127.0.0.1:$((port + 500))" --channel hist:probe \
  --rate "$rate" --duration "$duration" --label "catch-up $((connections * per_client)) channels" \
  --json "$out/catch-up.json" 2>"$log" >/dev/null &
generator=$!
# Once the ballast is in place and the probe flows, restart Redis.
until grep -q "published once" "$log"; do
  kill -0 "$generator" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.5
done
sleep 5
kill -9 "$(listener_pid "$redis")"
sleep 1
start_redis_on "$redis"
wait "$generator"
stop_server "$node,$(listener_pid "$redis")"
cat "$out/catch-up.json"
