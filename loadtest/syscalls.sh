#!/usr/bin/env bash
# What a server asks of the kernel while it fans out: its sendto, recvfrom
# and epoll_wait calls, the TCP segments sent in its context (its own, and
# the ACKs its peers' sockets send back at once while it delivers to them
# over loopback), the wake-ups it causes, and its CPU time, counted by
# `perf stat` over the middle half of a broadcast run, for each server in
# SERVERS, alternating, ROUNDS times. The servers are those of common.sh,
# pinned as in run.sh. Needs perf (apt-get install linux-perf).
#
#   loadtest/syscalls.sh [subscribers] [duration] [rates...]
#   SERVERS="switchyard raw-envelope" ROUNDS=2 loadtest/syscalls.sh 100 10s 5000
# SCENARIO=channels counts scenario 2 instead (the first argument is then
# the number of clients, CHURN their churn):
#   SCENARIO=channels SERVERS=switchyard loadtest/syscalls.sh 10000 10s 2000 10000
#
# Results in target/loadtest/syscalls.md, one row per run; the generator's
# own row of each run (p99, lost) in target/loadtest/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
rounds=${ROUNDS:-2}
payload=${PAYLOAD:-128}
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
take_args 100 10s "5000" "$@"
subscribers=$size
seconds=${duration%s}
window=$((seconds / 2))
[ "$window" -ge 1 ] || { echo "the duration is at least 2s" >&2; exit 1; }

events=syscalls:sys_enter_sendto,net:net_dev_xmit,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,sched:sched_waking,task-clock
table="$out/syscalls.md"
rm -f "$out/results.md"
{
  echo "| run | rate/s | sendto/s | deliveries per sendto | segments/s | recvfrom/s | epoll_wait/s | wake-ups/s | CPU ms/s |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$table"
for round in $(seq "$rounds"); do
  for rate in "${rates[@]}"; do
    port=9100
    for server in ${SERVERS:-switchyard raw-envelope}; do
      port=$((port + 1))
      read -r pids url publish_url target scrape < <(start_server "$server" "$port")
      shape=(--subscribers "$subscribers")
      [ "${SCENARIO:-broadcast}" = channels ] && shape=(--scenario channels --connections "$subscribers" --churn "${CHURN:-0}")
      taskset -c 1 target/release/switchyard-loadtest --url "$url" --publish-url "$publish_url" --target "$target" \
        "${shape[@]}" --rate "$rate" --payload "$payload" --duration "$duration" --late-limit 10s \
        --server-pid "$pids" --label "$server r$round" --results "$out/results.md" >"$out/syscalls-generator.log" 2>&1 &
      generator=$!
      # The middle half of the run: past the connects, before the end.
      sleep $((seconds / 4 + 1))
      perf stat -x, -e "$events" -p "$pids" -o "$out/syscalls-perf.csv" -- sleep "$window" >/dev/null 2>&1
      wait "$generator"
      stop_server "$pids"
      python3 - "$out/syscalls-perf.csv" "$server r$round" "$rate" "$subscribers" "$window" >>"$table" <<'PY'
import sys
path, label, rate, subscribers, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
counts = {}
for line in open(path):
    fields = line.strip().split(",")
    if len(fields) < 3 or line.startswith("#"):
        continue
    try:
        counts[fields[2]] = float(fields[0])
    except ValueError:
        counts[fields[2]] = 0.0
per_second = lambda event: counts.get(event, 0.0) / window
sendto = per_second("syscalls:sys_enter_sendto")
frames = rate * subscribers / sendto if sendto else 0
print(f"| {label} | {rate} | {sendto:,.0f} | {frames:.1f} | {per_second('net:net_dev_xmit'):,.0f} "
      f"| {per_second('syscalls:sys_enter_recvfrom'):,.0f} "
      f"| {per_second('syscalls:sys_enter_epoll_wait'):,.0f} | {per_second('sched:sched_waking'):,.0f} "
      f"| {per_second('task-clock'):.0f} |")
PY
      tail -n 1 "$table"
    done
  done
done
echo "results: $table (and the generator's rows in $out/results.md)"
