#!/usr/bin/env python3
"""Turns criterion's saved estimates into the ratio tables of BENCHMARKS.md.

Run after `cargo bench --bench compare` (and `--bench l1`); reads target/criterion/**/new/
estimates.json and prints, per group, each contender's median time per operation and its
throughput relative to the papaya floor, quick_cache and moka measured in the same run.

Given several criterion directories (copies of target/criterion after each of several runs),
each figure is the median over the runs: of the time, and of each ratio taken within its run.
"""
import json
import pathlib
import statistics
import sys

roots = [pathlib.Path(p) for p in sys.argv[1:]] or [pathlib.Path("target/criterion")]


def median_ns(bench_dir: pathlib.Path) -> float:
    est = json.loads((bench_dir / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"]


def groups_of(root: pathlib.Path, prefix: str):
    found = {}
    for group_dir in sorted(root.iterdir()):
        if not group_dir.is_dir() or not group_dir.name.startswith(prefix):
            continue
        benches = {}
        for bench_dir in sorted(group_dir.iterdir()):
            if (bench_dir / "new" / "estimates.json").exists():
                benches[bench_dir.name] = median_ns(bench_dir)
        if benches:
            found[group_dir.name] = benches
    return found


def groups(prefix: str):
    """Per group, per contender: the list of times, one per run (in run order)."""
    runs = [groups_of(root, prefix) for root in roots]
    for name in sorted(set().union(*runs)):
        benches = {}
        for run in runs:
            for contender, ns in run.get(name, {}).items():
                benches.setdefault(contender, []).append(ns)
        yield name, benches, [run.get(name, {}) for run in runs]


def median_ratio(per_run, contender, peer):
    """The median over runs of peer time / contender time (throughput of contender vs peer)."""
    ratios = [r[peer] / r[contender] for r in per_run if peer in r and contender in r]
    return statistics.median(ratios) if ratios else None


def compare_tables():
    print("| workload | threads | contender | ns per round (median) | throughput vs papaya floor | vs quick_cache | vs moka |")
    print("|---|---|---|---|---|---|---|")
    for prefix in ("read_", "mix90_10_"):
        for name, benches, per_run in groups(prefix):
            # criterion escapes '/' in group names as '_'
            parts = name.split("_")
            threads = parts[-1]
            workload = "_".join(parts[:-1])
            for contender, times in benches.items():
                def ratio(peer):
                    r = median_ratio(per_run, contender, peer)
                    return f"{r:.2f}x" if r is not None else "-"
                ns = statistics.median(times)
                print(f"| {workload} | {threads} | {contender} | {ns:.1f} | {ratio('papaya_floor')} | {ratio('quick_cache')} | {ratio('moka')} |")


def scaling_table():
    """Throughput at 2 threads over 1 thread, per contender (a round is one op per thread)."""
    print("| workload | contender | 2 threads / 1 thread throughput |")
    print("|---|---|---|")
    one = {name: benches for name, benches, _ in groups("read_")}
    for name, benches in one.items():
        if not name.endswith("_1t"):
            continue
        two = one.get(name[:-3] + "_2t", {})
        for contender, times1 in benches.items():
            if contender in two:
                scale = [2 * a / b for a, b in zip(times1, two[contender])]
                print(f"| {name[5:-3]} | {contender} | {statistics.median(scale):.2f}x |")


def l1_table():
    print("| group | bench | ns/iter (median) |")
    print("|---|---|---|")
    for prefix in ("l1_",):
        for name, benches, _ in groups(prefix):
            for bench, times in benches.items():
                print(f"| {name} | {bench} | {statistics.median(times):.1f} |")


if __name__ == "__main__":
    compare_tables()
    print()
    scaling_table()
    print()
    l1_table()
