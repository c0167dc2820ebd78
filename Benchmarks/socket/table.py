#!/usr/bin/env python3
"""Markdown tables from the raw lines Benchmarks/socket/run.sh keeps.

Each cell is the median over the rounds with the spread (lowest-highest) in
brackets; the ratios tokend / C are taken within each round (the two servers
ran back to back) and then summarized. "met" counts the rounds in which
every target of that row held (issue #15's targets).

    Benchmarks/socket/table.py Benchmarks/results/socket-<time>.txt [more files]

With several files, every round of every file counts as one round.
"""
import statistics
import sys

# (mode, connections): (minimum req/s ratio, maximum p99 ratio or None)
TARGETS = {
    ("persistent", 1): (1.0, None),
    ("persistent", 16): (0.7, 2.0),
    ("persistent", 64): (0.7, 2.0),
    ("connect", 16): (0.5, None),
}


def parse(paths):
    runs = {}
    for number, path in enumerate(paths):
        with open(path) as file:
            for line in file:
                if line.startswith("#") or not line.strip():
                    continue
                fields = dict(item.split("=", 1) for item in line.split())
                key = (fields["mode"], int(fields["connections"]))
                round_key = (number, int(fields["round"]))
                runs.setdefault(key, {}).setdefault(round_key, {})[fields["server"]] = fields
    return runs


def spread(values, format_value):
    middle = statistics.median(values)
    if len(values) == 1:
        return format_value(middle)
    return f"{format_value(middle)} ({format_value(min(values))}–{format_value(max(values))})"


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    runs = parse(sys.argv[1:])
    if not runs:
        print(f"table.py: no runs in {' '.join(sys.argv[1:])}", file=sys.stderr)
        return 1
    whole = lambda v: f"{v:,.0f}"
    ratio = lambda v: f"{v:.2f}"
    micro = lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    rows, details = [], []
    for key in sorted(runs, key=lambda k: (k[0] != "persistent", k[1])):
        mode, connections = key
        rounds = [r for r in sorted(runs[key]) if {"tokend", "c"} <= set(runs[key][r])]
        if not rounds:
            continue
        pick = lambda server, field: [float(runs[key][r][server][field]) for r in rounds]
        rps_ratios = [t / c for t, c in zip(pick("tokend", "rps"), pick("c", "rps"))]
        p99_ratios = [t / c for t, c in zip(pick("tokend", "p99_us"), pick("c", "p99_us"))]
        minimum_rps, maximum_p99 = TARGETS.get(key, (None, None))
        met = sum(
            (minimum_rps is None or r >= minimum_rps) and (maximum_p99 is None or p <= maximum_p99)
            for r, p in zip(rps_ratios, p99_ratios))
        load = f"{connections} connection{'s' if connections > 1 else ''}" if mode == "persistent" \
            else f"connect per request, {connections} in flight"
        target = " and ".join(
            part for part in (
                f"req/s ≥ {minimum_rps}×" if minimum_rps is not None else "",
                f"p99 ≤ {maximum_p99}×" if maximum_p99 is not None else "") if part) or "—"
        rows.append(
            f"| {load} | {spread(pick('tokend', 'rps'), whole)} | {spread(pick('c', 'rps'), whole)} "
            f"| **{spread(rps_ratios, ratio)}** | {spread(pick('tokend', 'p99_us'), micro)} "
            f"| {spread(pick('c', 'p99_us'), micro)} | **{spread(p99_ratios, ratio)}** | {target} "
            f"| {met} of {len(rounds)} |")
        for server, name in (("tokend", "tokend"), ("c", "C epoll")):
            details.append(
                f"| {load} | {name} | {spread(pick(server, 'p50_us'), micro)} | {spread(pick(server, 'p99_us'), micro)} "
                f"| {spread(pick(server, 'p999_us'), micro)} | {spread(pick(server, 'max_us'), micro)} "
                f"| {spread(pick(server, 'client_cpu_s'), ratio)} | {spread(pick(server, 'server_cpu_s'), ratio)} |")
    print("| load | tokend req/s | C req/s | req/s tokend / C | tokend p99 µs | C p99 µs | p99 tokend / C "
          "| target | met |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("| load | server | p50 µs | p99 µs | p999 µs | max µs | client CPU s | server CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
