#!/usr/bin/env bash
# A smoke run of the load generator, for the test command: a few seconds
# against a real node at a low rate, subscribers over WebSocket and over
# Server-Sent Events; fails if anything was lost or a report is missing.
# Correctness only: no figure here is a measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -q --bin switchyard --bin switchyard-loadtest
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT
SWITCHYARD_CLIENT__COMMANDS_PER_SECOND=100000 SWITCHYARD_CLIENT__COMMANDS_BURST=100000 RUST_LOG=info NO_COLOR=1 \
  target/debug/switchyard serve --listen 127.0.0.1:0 2>"$out/node.log" &
pid=$!
for _ in $(seq 200); do
  grep -q "switchyard is up" "$out/node.log" && break
  sleep 0.05
done
port=$(grep -o 'listen=127\.0\.0\.1:[0-9]*' "$out/node.log" | head -n 1 | cut -d: -f2)
[ -n "$port" ] || { echo "the node did not start:" >&2; cat "$out/node.log" >&2; exit 1; }
for target in switchyard-json switchyard-sse; do
  target/debug/switchyard-loadtest --url "ws://127.0.0.1:$port/ws" --target "$target" --subscribers 5 --rate 100 \
    --duration 2s --late-limit 5s --server-pid "$pid" --label "smoke-$target" \
    --json "$out/$target.json" --results "$out/results.md" >/dev/null
  python3 - "$out/$target.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
assert report["sent"] > 0 and report["lost"] == 0, report
assert report["delivered"] == report["sent"] * report["subscribers"], report
PY
done
[ "$(grep -c '^| smoke-' "$out/results.md")" = 2 ] || { echo "the results table is missing rows" >&2; exit 1; }
echo "loadtest smoke: nothing lost over WebSocket and SSE, reports written"
