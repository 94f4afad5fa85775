#!/usr/bin/env bash
# Consumers (docs/benchmarks.md, "Consumers"): two switchyard nodes over one
# Redis, with a Redis stream, a PostgreSQL outbox and a JetStream stream
# consumed by the cluster; the generator writes stamped entries into each
# source at a steady rate (XADD, one INSERT transaction per row, a NATS
# publish) while 10 subscribers on the second node time each delivery from
# the moment it was written. The outbox twice: with its NOTIFY trigger and
# without (polling every second). Everything on CPU 0 but the generator.
# Results in target/loadtest/consumers.md.
#
#   loadtest/consumers.sh [subscribers] [duration] [rates...]
#   loadtest/consumers.sh 10 10s 1000 5000
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
take_args 10 10s "1000 5000" "$@"
dir=$out/consumers
rm -rf "$dir"
mkdir -p "$dir"
command -v nats-server >/dev/null || { echo "nats-server is needed (apt-get install nats-server)" >&2; exit 1; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)

redis_port=9401 pg_port=9402 nats_port=9403
start_redis "$redis_port"
scratch=$(mktemp -d)
chown postgres "$scratch" 2>/dev/null || true
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_pg "$pg_bin/initdb" -D "$scratch/pg" -A trust -U postgres >/dev/null
as_pg "$pg_bin/postgres" -D "$scratch/pg" -p "$pg_port" -k "$scratch" -c listen_addresses=127.0.0.1 \
  -c fsync=off -c synchronous_commit=off >"$out/postgres.log" 2>&1 &
taskset -c 0 nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$scratch/nats" >"$out/nats.log" 2>&1 &
wait_port "$redis_port" && wait_port "$pg_port" && wait_port "$nats_port"
cleanup() {
  pkill -f "$scratch" 2>/dev/null || true
  kill "$(listener_pid "$redis_port")" "$(listener_pid "$nats_port")" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
pg_url="postgres://postgres@127.0.0.1:$pg_port/postgres"
as_pg "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -f docs/examples/outbox.sql
target/release/switchyard-loadtest --scenario jetstream-setup --publish-to "nats://127.0.0.1:$nats_port"
cat >"$scratch/switchyard.toml" <<TOML
[[consumers]]
name = "events"
kind = "redis_stream"
[[consumers]]
name = "orders"
kind = "postgres_outbox"
postgres_url = "$pg_url"
[[consumers]]
name = "jobs"
kind = "nats_jetstream"
nats_url = "nats://127.0.0.1:$nats_port"
stream = "EVENTS"
TOML

run() { # NAME VIA TO RATE
  local first=9410 second=9460
  # Each run starts with empty sources: what one run left behind would be
  # the next one's backlog.
  as_pg "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "TRUNCATE switchyard_outbox"
  redis-cli -p "$redis_port" DEL switchyard:publish >/dev/null
  SWITCHYARD_BROKER__REDIS_URL="redis://127.0.0.1:$redis_port" SWITCHYARD_CONFIG="$scratch/switchyard.toml" \
    start_switchyard "$first"
  SWITCHYARD_BROKER__REDIS_URL="redis://127.0.0.1:$redis_port" SWITCHYARD_CONFIG="$scratch/switchyard.toml" \
    start_switchyard "$second"
  wait_port "$first" && wait_port "$second"
  # The nodes' CPU counts, and Redis's (the broker); the source's is not
  # switchyard's.
  local nodes
  nodes="$(listener_pid "$first"),$(listener_pid "$second")"
  taskset -c 1 target/release/switchyard-loadtest --url "ws://127.0.0.1:$second/ws" --target switchyard-json \
    --subscribers "$size" --rate "$4" --payload 128 --duration "$duration" --publish-via "$2" --publish-to "$3" \
    --server-pid "$nodes,$(listener_pid "$redis_port")" --label "$1 $4/s" --json "$dir/$1-$4.json" \
    --results "$dir/results.md" | tail -n 1
  stop_server "$nodes"
}

for rate in "${rates[@]}"; do
  run redis-stream xadd "127.0.0.1:$redis_port" "$rate"
  run outbox-notify outbox "$pg_url" "$rate"
  run jetstream jetstream "nats://127.0.0.1:$nats_port" "$rate"
done
as_pg "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "DROP TRIGGER switchyard_outbox_notify ON switchyard_outbox"
for rate in "${rates[@]}"; do
  run outbox-polling outbox "$pg_url" "$rate"
done
cp "$dir/results.md" "$out/consumers.md"
cat "$out/consumers.md"
