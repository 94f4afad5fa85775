#!/usr/bin/env bash
# Fewer bytes, in one run (docs/benchmarks.md, "Fewer bytes"), servers on
# CPU 0 and the generator on CPU 1:
#   1. compression: a 1 KiB JSON document (an order-book update, different
#      every time) to 100 subscribers that offer permessage-deflate, from
#      switchyard without and with client.compression and from Node `ws`
#      without and with perMessageDeflate (threshold 0): deliveries per
#      server CPU-second and bytes on the wire per delivery;
#   2. deltas: a 2 KiB document of which about 5 % changes each time, to 100
#      subscribers: full, deflate, delta, delta + deflate: wire bytes per
#      delivery;
#   3. filters: 1,000 subscribers on one channel without filters, then with
#      1, 10 and 100 distinct filters (every publication tagged for one of
#      them), and 10 distinct over 500 and 2,000 subscribers: server CPU per
#      publication and per delivery.
# Results in target/loadtest/fewer-bytes.md (and a JSON report per run).
#
#   loadtest/fewer_bytes.sh [duration] [rounds]
#   loadtest/fewer_bytes.sh 10s 2
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
rounds=${2:-2}
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
dir=$out/fewer-bytes
rm -rf "$dir"
mkdir -p "$dir"

# run NAME SERVER SUBSCRIBERS RATE PAYLOAD KIND [generator arguments...]
run() {
  local name=$1 server=$2 subscribers=$3 rate=$4 payload=$5 kind=$6
  shift 6
  read -r pids url _ target _ < <(start_server "$server" 9300)
  taskset -c 1 target/release/switchyard-loadtest --url "$url" --target "$target" --subscribers "$subscribers" \
    --rate "$rate" --payload "$payload" --payload-kind "$kind" --duration "$duration" --server-pid "$pids" \
    --label "$name" --json "$dir/$name.json" "$@" >/dev/null
  stop_server "$pids"
}

for round in $(seq "$rounds"); do
  run "compression-switchyard-r$round" switchyard 100 1000 1024 document --deflate
  run "compression-switchyard-deflate-r$round" switchyard-deflate 100 1000 1024 document --deflate
  run "compression-node-ws-r$round" node-ws 100 1000 1024 document --deflate
  run "compression-node-ws-deflate-r$round" node-ws-deflate 100 1000 1024 document --deflate
  run "delta-full-r$round" switchyard-delta 100 1000 2048 state
  run "delta-deflate-r$round" switchyard-delta-deflate 100 1000 2048 state --deflate
  run "delta-delta-r$round" switchyard-delta 100 1000 2048 state --delta
  run "delta-delta-deflate-r$round" switchyard-delta-deflate 100 1000 2048 state --delta --deflate
  run "filters-0-1000-r$round" switchyard 1000 200 128 padding
  for filters in 1 10 100; do
    run "filters-$filters-1000-r$round" switchyard 1000 200 128 padding --filters "$filters"
  done
  run "filters-10-500-r$round" switchyard 500 200 128 padding --filters 10
  run "filters-10-2000-r$round" switchyard 2000 200 128 padding --filters 10
done

python3 - "$dir" <<'PY' | tee "$out/fewer-bytes.md"
import glob, json, os, sys
runs = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    r = json.load(open(path))
    runs[r["label"]] = r
def per_cpu(r):
    return r["delivered"] / r["server_cpu_seconds"] if r.get("server_cpu_seconds") else float("nan")
rounds = sorted({label.rsplit("-r", 1)[1] for label in runs})
print("| run | delivered | lost | deliveries per server CPU-s | wire bytes per delivery | server CPU µs per publication | p99 ms |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for label, r in runs.items():
    cpu_us = r["server_cpu_seconds"] / max(r["sent"], 1) * 1e6 if r.get("server_cpu_seconds") else float("nan")
    print(f"| {label} | {r['delivered']} | {r.get('lost', '-')} | {per_cpu(r):,.0f} | {r['wire_bytes_per_delivery']:.0f} "
          f"| {cpu_us:.1f} | {r['latency_us']['p99'] / 1000:.2f} |")
print()
print("Ratios within each round:")
for n in rounds:
    g = lambda name: runs.get(f"{name}-r{n}")
    sy, syd, ws, wsd = g("compression-switchyard"), g("compression-switchyard-deflate"), g("compression-node-ws"), g("compression-node-ws-deflate")
    if sy and syd and wsd and ws:
        print(f"- round {n}: switchyard with compression does {per_cpu(syd) / per_cpu(sy):.2f}x the deliveries per CPU-second "
              f"it does without, and {per_cpu(syd) / per_cpu(wsd):.1f}x Node ws with perMessageDeflate "
              f"({per_cpu(ws) / per_cpu(wsd):.1f}x is what ws itself loses to compression); wire bytes per delivery "
              f"{syd['wire_bytes_per_delivery']:.0f} against {sy['wire_bytes_per_delivery']:.0f} plain")
    full, dl, dd, df = g("delta-full"), g("delta-delta"), g("delta-delta-deflate"), g("delta-deflate")
    if full and dl and dd and df:
        f = full["wire_bytes_per_delivery"]
        print(f"- round {n}: of the full document's {f:.0f} wire bytes per delivery, deflate sends "
              f"{df['wire_bytes_per_delivery'] / f:.1%}, delta {dl['wire_bytes_per_delivery'] / f:.1%}, "
              f"delta + deflate {dd['wire_bytes_per_delivery'] / f:.1%}")
    base = g("filters-0-1000")
    if base:
        cpu = lambda r: r["server_cpu_seconds"] / max(r["sent"], 1) * 1e6
        parts = [f"{k}: {cpu(g(k)) / cpu(base):.2f}x" for k in
                 ["filters-1-1000", "filters-10-1000", "filters-100-1000", "filters-10-500", "filters-10-2000"] if g(k)]
        print(f"- round {n}: server CPU per publication against 1,000 unfiltered subscribers: " + ", ".join(parts))
PY
