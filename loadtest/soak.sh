#!/usr/bin/env bash
# An hour of chaos (or DURATION seconds): the TypeScript SDK's clients
# through haproxy on three switchyard nodes over Redis (append-only file,
# fsync always), a backend publishing with idempotency keys, and a fault
# every 20-40 s (SIGKILL, SIGTERM, SIGSTOP for 10 s, a Redis restart, a
# silent path between one node and Redis). Prints what was lost,
# duplicated, out of order, the gaps and reconnects, and the nodes' memory
# growth; exits non-zero if anything was lost, duplicated, out of order or
# a gap. Not in the test command (it takes an hour).
#
#   loadtest/soak.sh [DURATION_SECONDS] [CLIENTS]
#   loadtest/soak.sh 3600 1000
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-3600}
clients=${2:-1000}
cargo build --release --locked -q --bin switchyard
(cd clients/js && { [ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null; } && npm run -s build >/dev/null)
out=target/soak/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
# 1,000 clients and three nodes in one process tree: room for their sockets.
ulimit -n 20000
node loadtest/soak/soak.mjs --duration "$duration" --clients "$clients" --out "$out" | tee "$out/soak.log"
