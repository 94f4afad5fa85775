#!/usr/bin/env bash
# Every case of the Autobahn testsuite's compression sections (12 and 13,
# permessage-deflate) against the gateway's WebSocket code, through the
# `/echo` endpoint with `client.compression` on (release build). The test
# command runs sections 1-7, 9, 10 and a subset of 12 and 13; this script
# runs all of them (about four minutes). Prints the summary and writes the
# report to target/autobahn/.
#
#   scripts/autobahn.sh              # sections 12 and 13
#   scripts/autobahn.sh '1.*' '9.*'  # any sections or cases
set -euo pipefail
cd "$(dirname "$0")/.."
python=target/pyenv/bin/python
"$python" -c 'import kosoku' 2>/dev/null || { echo "run scripts/test.sh once first: it installs kosoku" >&2; exit 1; }
cargo build --release --locked -q --bin switchyard
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=('12.*' '13.*')
log=$(mktemp)
SWITCHYARD_TESTING__ECHO=true SWITCHYARD_CLIENT__COMPRESSION=true \
  SWITCHYARD_CLIENT__MAX_MESSAGE_SIZE=20971520 SWITCHYARD_CLIENT__MAX_QUEUE_BYTES=67108864 \
  SWITCHYARD_CLIENT__MAX_REPLY_BYTES=67108864 \
  target/release/switchyard serve --listen 127.0.0.1:0 2>"$log" &
node=$!
trap 'kill $node 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  port=$(grep -o 'listen=127.0.0.1:[0-9]*' "$log" | head -1 | cut -d: -f2) && [ -n "$port" ] && break
  sleep 0.1
done
[ -n "${port:-}" ] || { cat "$log" >&2; exit 1; }
args=()
for c in "${cases[@]}"; do args+=(-i "$c"); done
rm -rf target/autobahn
"$python" scripts/autobahn.py "ws://127.0.0.1:$port/echo" "${args[@]}" -o target/autobahn
