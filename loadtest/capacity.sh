#!/usr/bin/env bash
# The measurements behind docs/capacity.md: the same cluster (two nodes and
# one Redis on CPU 0, subscribers on the second node, the publisher on the
# first: `switchyard-redis` of common.sh) under several shapes of traffic,
# each process's CPU per second, and the receiving node's socket writes per
# second (from its `switchyard_delivery_latency_seconds_count`, which counts
# one per write that carries publications); then Redis alone, its CPU per
# PUBLISH against the number of subscribed connections (nodes).
#
#   loadtest/capacity.sh
#   ROUNDS=2 DURATION=8s loadtest/capacity.sh
#   SHAPES="channels:10000:10:2000 broadcast:100:5000" loadtest/capacity.sh
#
# A shape is `broadcast:<subscribers>:<rate>` (one channel) or
# `channels:<clients>:<group size>:<rate>` (scenario 2: a personal and a
# group channel per client, publications alternating between them).
# One JSON line per run in target/loadtest/capacity.jsonl, Redis's in
# target/loadtest/capacity-redis.jsonl; loadtest/capacity_model.py fits
# the unit costs on some shapes and checks them on the others.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-2}
duration=${DURATION:-8s}
# Fitted on the first three shapes, checked on the last two (see
# capacity_model.py's --fit).
shapes=${SHAPES:-"broadcast:100:1000 broadcast:100:5000 channels:10000:10:2000 channels:10000:10:6000
  channels:10000:100:400 channels:10000:100:800 broadcast:1000:100 channels:10000:1000:100"}
# shellcheck source=loadtest/common.sh
. loadtest/common.sh

runs="$out/capacity.jsonl"
: >"$runs"
# The receiving node's socket writes that carried publications, so far.
writes() {
  curl -s "http://$1/metrics" | awk '$1 == "switchyard_delivery_latency_seconds_count" { print $2 }'
}

for round in $(seq "$rounds"); do
  for shape in $shapes; do
    IFS=: read -r kind a b c <<<"$shape"
    case "$kind" in
      broadcast) args=(--subscribers "$a"); rate=$b; name="broadcast-$a" ;;
      channels) args=(--scenario channels --connections "$a" --group-size "$b" --churn 0); rate=$c; name="channels-${a}x$b" ;;
      *) echo "unknown shape $shape" >&2; exit 1 ;;
    esac
    read -r pids url publish_url target scrape < <(start_server switchyard-redis 9401)
    receiving=${scrape#*,}
    before=$(writes "$receiving")
    taskset -c 1 target/release/switchyard-loadtest "${args[@]}" --url "$url" --publish-url "$publish_url" \
      --target "$target" --rate "$rate" --payload 128 --duration "$duration" --late-limit 10s \
      --server-pid "$pids" --label "$name $rate/s r$round" --json "$out/capacity-run.json" \
      --results "$out/capacity-results.md" | tail -n 1
    after=$(writes "$receiving")
    stop_server "$pids"
    python3 - "$out/capacity-run.json" "$shape" "$name" "$round" "$before" "$after" "${duration%s}" >>"$runs" <<'PY'
import json, sys
path, shape, name, round_, before, after, seconds = sys.argv[1:]
run = json.load(open(path))
parts = shape.split(":")
connections = int(parts[1])
run.update({
    "shape": name,
    "round": int(round_),
    "connections": connections,
    # Writes over the whole run; only publications' writes are counted,
    # and they happen while publishing (plus the late ones, few).
    "receiving_writes_per_second": (float(after) - float(before)) / float(run["seconds"]),
})
print(json.dumps(run))
PY
  done
done

# Redis alone: PUBLISH pipelined 16 deep (as a node's publishes in flight
# arrive) to one channel with 0, 1, 4 and 16 subscribed connections, each
# standing for a node; Redis's CPU per publication from /proc.
redis_runs="$out/capacity-redis.jsonl"
: >"$redis_runs"
port=9499
publications=${REDIS_PUBLICATIONS:-400000}
for round in $(seq "$rounds"); do
  for subscribers in 0 1 4 16; do
    start_redis "$port"
    wait_port "$port"
    redis_pid=$(listener_pid "$port")
    listeners=()
    for _ in $(seq "$subscribers"); do
      taskset -c 1 redis-cli -p "$port" subscribe capacity >/dev/null &
      listeners+=($!)
    done
    # Every subscriber is in before the clock starts.
    until [ "$(redis-cli -p "$port" pubsub numsub capacity | tail -n 1)" = "$subscribers" ]; do sleep 0.1; done
    ticks_before=$(awk '{ print $14 + $15 }' "/proc/$redis_pid/stat")
    taskset -c 1 redis-benchmark -p "$port" -n "$publications" -P 16 -c 4 -q \
      publish capacity "$(head -c 128 /dev/zero | tr '\0' x)" >/dev/null
    ticks_after=$(awk '{ print $14 + $15 }' "/proc/$redis_pid/stat")
    kill "${listeners[@]}" 2>/dev/null || true
    stop_server "$redis_pid"
    python3 -c 'import json, os, sys
subscribers, publications, before, after = map(int, sys.argv[1:])
seconds = (after - before) / os.sysconf("SC_CLK_TCK")
print(json.dumps({"subscribers": subscribers, "publications": publications,
                  "redis_cpu_seconds": seconds, "redis_us_per_publication": seconds * 1e6 / publications}))' \
      "$subscribers" "$publications" "$ticks_before" "$ticks_after" | tee -a "$redis_runs"
  done
done
echo "runs: $runs and $redis_runs; fit with: python3 loadtest/capacity_model.py"
