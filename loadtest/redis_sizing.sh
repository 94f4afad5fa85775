#!/usr/bin/env bash
# Redis memory per channel (docs/redis.md, sizing): a node loads the
# function library (namespace `hist`: 100 publications kept), then channels
# are filled by FCALL and Redis' used_memory is read before and after:
#   - 10,000 channels with one 128-byte publication (meta hash + stream),
#   - 1,000 channels with 100 publications each (a full history),
#   - 1,000 channels with 10 presence members each.
#
#   loadtest/redis_sizing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
port=9180
redis=$((port + 1000))
start_redis "$redis"
wait_port "$redis"
SWITCHYARD_BROKER__REDIS_URL="redis://127.0.0.1:$redis" \
  SWITCHYARD_NAMESPACES__HIST__HISTORY_SIZE=100 SWITCHYARD_NAMESPACES__HIST__HISTORY_TTL=10m \
  SWITCHYARD_NAMESPACES__ROOM__PRESENCE=true start_switchyard "$port"
wait_port "$port"
node=$(listener_pid "$port")
used() { redis-cli -p "$redis" INFO memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'; }
# RESP for "FCALL ..." lines from a Python generator, piped in bulk.
fill() { python3 -c "$1" | redis-cli -p "$redis" --pipe >/dev/null; }
payload=$(python3 -c 'print("{\"p\":\"" + "x" * 119 + "\"}")')

measure() {
  local what=$1 count=$2 script=$3 before after
  before=$(used)
  fill "$script"
  after=$(used)
  echo "| $what | $count | $(( (after - before) / count )) |"
}

echo "| what | channels | bytes per channel |"
echo "| --- | ---: | ---: |"
resp='
import sys
def cmd(*parts):
    out = [f"*{len(parts)}\r\n"]
    for p in parts:
        out.append(f"${len(p.encode())}\r\n{p}\r\n")
    return "".join(out)
'
measure "one publication of 128 B (meta + stream)" 10000 "$resp
for c in range(10000):
    sys.stdout.write(cmd('FCALL', 'switchyard_publish', '1', f'hist:one{c}', '$payload'))"
measure "100 publications of 128 B (a full history)" 1000 "$resp
for c in range(1000):
    for n in range(100):
        sys.stdout.write(cmd('FCALL', 'switchyard_publish', '1', f'hist:full{c}', '$payload'))"
measure "10 presence members" 1000 "$resp
member = 'x' * 48
for c in range(1000):
    args = []
    for m in range(10):
        args += [f'n1-{c}-{m}', member]
    sys.stdout.write(cmd('FCALL', 'switchyard_presence_add', '1', f'room:r{c}', '60000', '0', *args))"
stop_server "$node,$(listener_pid "$redis")"
