"""Mixture planning at the real InternVL-Chat-V1-2 scale (nine sources, 1,267,819 samples):
dataprep.mixture.allocate and dataprep.mixture.plan against a naive planner that concatenates every
sample, shuffles once with random.shuffle and cuts shards (it keeps no per-shard proportions).

Reports the median time of interleaved repetitions, the tracemalloc peak of one separate run each
(tracemalloc slows the code, so never in a timed run), and as a quality figure the deviation of each
shard's per-source count from its exact share (total × shard size / grand total).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from benchlib import emit, machine, table

from dataprep.mixture import Component, Plan, allocate, plan

V1_2 = [
    ("sharegpt4v_cap100k", 102025),
    ("llava_zh", 157712),
    ("sharegpt4v_mix665k", 665058),
    ("dvqa", 200000),
    ("chartqa", 18317),
    ("ai2d", 12413),
    ("docvqa", 10211),
    ("geoqa_plus", 72318),
    ("synthdog_en", 29765),
]


def naive(totals: list[int], shard_size: int, seed: int) -> list[list[tuple[int, int]]]:
    """Every (source, index) once, one global shuffle, consecutive cuts of `shard_size`."""
    items = [(component, index) for component, total in enumerate(totals) for index in range(total)]
    random.Random(seed).shuffle(items)
    return [items[start : start + shard_size] for start in range(0, len(items), shard_size)]


def counts_per_shard(shards: Plan | list[list[tuple[int, int]]], sources: int) -> list[list[int]]:
    """Per shard, how many samples of each source (a `Plan`, or (source, index) pairs per shard)."""
    if isinstance(shards, Plan):
        return [[shard.components.tolist().count(source) for source in range(sources)] for shard in shards]
    return [[[source for source, _ in slots].count(source) for source in range(sources)] for slots in shards]


def deviation(per_shard: list[list[int]], totals: list[int]) -> dict[str, float]:
    """Largest |count − exact share| in samples and relative to the share; cells off by > 1."""
    grand = sum(totals)
    worst = worst_relative = 0.0
    off = cells = 0
    for row in per_shard:
        size = sum(row)
        for count, total in zip(row, totals, strict=True):
            exact = total * size / grand
            gap = abs(count - exact)
            worst, worst_relative = max(worst, gap), max(worst_relative, gap / exact)
            off += gap >= 1
            cells += 1
    return {
        "max_abs_dev": round(worst, 2),
        "max_rel_dev": round(worst_relative, 3),
        "cells_off_by_1_or_more": round(off / cells, 4),
    }


def peak_mib(function: Callable[[], object]) -> float:
    """tracemalloc peak of one call, result included while it is alive."""
    tracemalloc.start()
    try:
        function()
        return round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--shard-size", type=int, default=2000, help="samples per shard (default: %(default)s)"
    )
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default: %(default)s)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every count (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    components = [Component(name, round(count * args.scale), "all", 1) for name, count in V1_2]
    totals = [component.kept for component in components]
    emit({"kind": "setup", "machine": machine(), "samples": sum(totals), "shard_size": args.shard_size})
    cases: dict[str, Callable[[], Any]] = {
        "allocate": lambda: allocate(totals, args.shard_size),
        "plan": lambda: plan(components, args.shard_size, args.seed),
        "naive_shuffle": lambda: naive(totals, args.shard_size, args.seed),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    quality: dict[str, dict[str, float]] = {}
    for rep in range(args.reps):
        for name, function in cases.items():
            started = time.perf_counter()
            result = function()
            times[name].append(time.perf_counter() - started)
            emit({"kind": "run", "case": name, "rep": rep, "seconds": round(times[name][-1], 3)})
            if rep == 0 and name != "allocate":
                quality[name] = deviation(counts_per_shard(result, len(totals)), totals)
            del result
    base = statistics.median(times["naive_shuffle"])
    rows = []
    for name, function in cases.items():
        seconds = statistics.median(times[name])
        row = {
            "kind": "summary",
            "case": name,
            "seconds": round(seconds, 4),
            "vs_naive_time": round(seconds / base, 3),
            "tracemalloc_peak_mib": peak_mib(function),
            **quality.get(name, {}),
        }
        rows.append(row)
        emit(row)
    columns = ["case", "seconds", "vs_naive_time", "tracemalloc_peak_mib", "max_abs_dev", "max_rel_dev"]
    print(table(rows, [*columns, "cells_off_by_1_or_more"]), file=sys.stderr)


if __name__ == "__main__":
    main()
