#!/usr/bin/env python3
"""Turns criterion's saved estimates into the ratio tables of BENCHMARKS.md.

Run after `cargo bench --bench compare` (and `--bench l1`); reads target/criterion/**/new/
estimates.json and prints, per group, each contender's median time per operation and its
throughput relative to the papaya floor, quick_cache and moka measured in the same run.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def median_ns(bench_dir: pathlib.Path) -> float:
    est = json.loads((bench_dir / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"]


def groups(prefix: str):
    for group_dir in sorted(root.iterdir()):
        if not group_dir.is_dir() or not group_dir.name.startswith(prefix):
            continue
        benches = {}
        for bench_dir in sorted(group_dir.iterdir()):
            if (bench_dir / "new" / "estimates.json").exists():
                benches[bench_dir.name] = median_ns(bench_dir)
        if benches:
            yield group_dir.name, benches


def compare_tables():
    print("| workload | threads | contender | ns per round (median) | throughput vs papaya floor | vs quick_cache | vs moka |")
    print("|---|---|---|---|---|---|---|")
    for prefix in ("read_", "mix90_10_"):
        for name, benches in groups(prefix):
            # criterion escapes '/' in group names as '_'
            parts = name.split("_")
            threads = parts[-1]
            workload = "_".join(parts[:-1])
            for contender, ns in benches.items():
                def ratio(peer):
                    other = benches.get(peer)
                    return f"{other / ns:.2f}x" if other else "-"
                print(f"| {workload} | {threads} | {contender} | {ns:.1f} | {ratio('papaya_floor')} | {ratio('quick_cache')} | {ratio('moka')} |")


def scaling_table():
    """Throughput at 2 threads over 1 thread, per contender (a round is one op per thread)."""
    print("| workload | contender | 2 threads / 1 thread throughput |")
    print("|---|---|---|")
    one = dict(groups("read_"))
    for name, benches in one.items():
        if not name.endswith("_1t"):
            continue
        two = one.get(name[:-3] + "_2t", {})
        for contender, ns1 in benches.items():
            if contender in two:
                print(f"| {name[5:-3]} | {contender} | {2 * ns1 / two[contender]:.2f}x |")


def l1_table():
    print("| group | bench | ns/iter (median) |")
    print("|---|---|---|")
    for prefix in ("l1_",):
        for name, benches in groups(prefix):
            for bench, ns in benches.items():
                print(f"| {name} | {bench} | {ns:.1f} |")


if __name__ == "__main__":
    compare_tables()
    print()
    scaling_table()
    print()
    l1_table()
