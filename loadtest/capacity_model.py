#!/usr/bin/env python3
"""The unit costs of docs/capacity.md, fitted on some of capacity.sh's runs
and checked on the others.

    python3 loadtest/capacity_model.py [--fit SHAPE,...] [runs.jsonl] [redis.jsonl]

Each run of capacity.sh is a cluster of two nodes and one Redis under one
shape of traffic. The model, per second of traffic:

    receiving node = (per_write + per_write_cold * warmth) * writes
                     + per_received * publications + idle * connections
                     + receiving_base
    publishing node = per_published * publications + publishing_base
    Redis = per_publication * publications + redis_base

where warmth = min(connections, 10,000) / 10,000: a write to one of many
sockets finds less of their state in the caches (kernel and node), so it
costs more the more connections the node holds, measured up to 10,000.
A delivery that shares a write with others adds too little to come out of
these runs (scenario 1 puts it near 0.2 µs): a node's cost is its writes.
The bases are each process's cost while traffic flows that does not
follow it (timers, housekeeping, and the first publication of a quiet
spell paying for system calls that later ones share).

`idle` is not fitted: it is the idle benchmark's heartbeat cost (IDLE_CORES
per connection at the default 25 s ping), a figure too small to come out
of these runs. The other costs are fitted by least squares on the --fit
shapes (every rate and round of them); the rest are predicted from the
fitted costs and their own counts, and the error is printed. Pure Python:
no package is needed.
"""

import argparse
import json
import sys
from collections import defaultdict

# Cores per idle connection: 0.063-0.067 cores per 10,000 connections at a
# 5 s ping (docs/benchmarks.md, scenario 4), scaled to the default 25 s.
IDLE_CORES = 0.065 / 10_000 / 5

RECEIVING = ["per_write", "per_write_cold", "per_received", "receiving_base"]
COLD_AT = 10_000


def solve(rows, targets):
    """Least squares by the normal equations (a handful of unknowns)."""
    n = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(n)] for i in range(n)]
    b = [sum(r[i] * t for r, t in zip(rows, targets)) for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda k: abs(a[k][col]))
        a[col], a[pivot], b[col], b[pivot] = a[pivot], a[col], b[pivot], b[col]
        for k in range(n):
            if k != col and a[col][col]:
                f = a[k][col] / a[col][col]
                a[k] = [x - f * y for x, y in zip(a[k], a[col])]
                b[k] -= f * b[col]
    return [b[i] / a[i][i] if a[i][i] else 0.0 for i in range(n)]


def counts(run):
    seconds = run["seconds"]
    cpu = [c / seconds for c in run["server_cpu_seconds_each"]]
    return {
        "publications": run["sent"] / seconds,
        "deliveries": run["deliveries_per_second"],
        "writes": run["receiving_writes_per_second"],
        "connections": run["connections"],
        "publishing": cpu[0],
        "receiving": cpu[1],
        "redis": cpu[2],
    }


def warmth(c):
    return min(c["connections"], COLD_AT) / COLD_AT


def predict(costs, c):
    receiving = (
        (costs["per_write"] + costs["per_write_cold"] * warmth(c)) * c["writes"]
        + costs["per_received"] * c["publications"]
        + IDLE_CORES * c["connections"]
        + costs["receiving_base"]
    )
    return {
        "publishing": costs["per_published"] * c["publications"] + costs["publishing_base"],
        "receiving": receiving,
        "redis": costs["per_publication"] * c["publications"] + costs["redis_base"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", default="broadcast-100,channels-10000x10,channels-10000x100")
    parser.add_argument("runs", nargs="?", default="target/loadtest/capacity.jsonl")
    parser.add_argument("redis", nargs="?", default="target/loadtest/capacity-redis.jsonl")
    args = parser.parse_args()
    fit_shapes = set(args.fit.split(","))
    runs = [json.loads(line) for line in open(args.runs) if line.strip()]
    fitted = [r for r in runs if r["shape"] in fit_shapes]
    if not fitted:
        sys.exit(f"no run of {sorted(fit_shapes)} in {args.runs}")

    rows, targets = [], []
    for r in fitted:
        c = counts(r)
        rows.append([c["writes"], c["writes"] * warmth(c), c["publications"], 1.0])
        targets.append(c["receiving"] - IDLE_CORES * c["connections"])
    costs = dict(zip(RECEIVING, solve(rows, targets)))
    for side, name in (("publishing", "per_published"), ("redis", "per_publication")):
        per, base = solve([[counts(r)["publications"], 1.0] for r in fitted], [counts(r)[side] for r in fitted])
        costs[name], costs[f"{side}_base"] = per, base

    print(f"Unit costs fitted on {', '.join(sorted(fit_shapes))} ({len(fitted)} runs), µs of one core:\n")
    print("| cost | µs |")
    print("| --- | ---: |")
    labels = {
        "per_write": "a socket write, receiving node, few connections",
        "per_write_cold": "a socket write, added at 10,000 connections",
        "per_received": "a publication received from Redis, receiving node",
        "per_published": "a client's publish, publishing node",
        "per_publication": "a publication, Redis",
    }
    for name, label in labels.items():
        print(f"| {label} | {costs[name] * 1e6:.2f} |")
    print(f"| an idle connection's heartbeat, per second (not fitted) | {IDLE_CORES * 1e6:.2f} |")
    for side in ("receiving", "publishing", "redis"):
        print(f"| base load while traffic flows, {side} (ms per second) | {costs[side + '_base'] * 1e3:.1f} |")

    print("\nEvery run, measured against the model (cores; * = a fitted run):\n")
    print("| run | deliveries/s | writes/s | publishing | receiving | Redis | all three | error |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    errors = defaultdict(list)
    for r in runs:
        c = counts(r)
        p = predict(costs, c)
        measured = c["publishing"] + c["receiving"] + c["redis"]
        model = sum(p.values())
        error = (model - measured) / measured
        fit = r["shape"] in fit_shapes
        errors["fitted" if fit else "checked"].append(abs(error))
        cells = " | ".join(f"{c[k]:.3f} / {p[k]:.3f}" for k in ("publishing", "receiving", "redis"))
        print(
            f"| {r['label']}{' *' if fit else ''} | {c['deliveries']:,.0f} | {c['writes']:,.0f} | {cells} "
            f"| {measured:.3f} / {model:.3f} | {error * 100:+.0f} % |"
        )
    print("\n(each cell: measured / model)")
    for kind, values in errors.items():
        print(f"{kind}: mean absolute error {sum(values) / len(values) * 100:.1f} %, worst {max(values) * 100:.1f} %")

    try:
        redis_runs = [json.loads(line) for line in open(args.redis) if line.strip()]
    except FileNotFoundError:
        redis_runs = []
    if redis_runs:
        by_subscribers = defaultdict(list)
        for r in redis_runs:
            by_subscribers[r["subscribers"]].append(r["redis_us_per_publication"])
        xs = sorted(by_subscribers)
        points = [(x, y) for x in xs for y in by_subscribers[x]]
        base, per_node = solve([[1.0, x] for x, _ in points], [y for _, y in points])
        print("\nRedis saturated (PUBLISH pipelined 16 deep), µs per publication by subscribed nodes:\n")
        print("| subscribed connections | µs per publication |")
        print("| ---: | ---: |")
        for x in xs:
            print(f"| {x} | {' / '.join(f'{y:.2f}' for y in by_subscribers[x])} |")
        print(f"\nfit: {base:.2f} µs + {per_node:.2f} µs per subscribed node")


if __name__ == "__main__":
    main()
