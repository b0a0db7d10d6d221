"""The driver's memory per kept sample, by `tracemalloc` (Python allocations only, numpy's included):
what a re-run holds once every entry's kept samples are gathered from the part indexes, the peak
while they are, then the plan's and the peak while every shard's sample copies (and their hash) are
made one shard at a time, as the build makes them. Then a shard worker's memory: `write_shard` of
the first shard's copies (as its job carries them) in a fresh process: its RSS after the imports,
what the copies add, its peak.

The data: `--records` tiny-image LLaVA records (`rerun_scale.write_tiny_recipe`), built once in
process by the first tree; then each tree in `--trees` gathers, plans and makes the copies in a
fresh process, then again untimed by tracemalloc for its seconds (one run: on a loaded machine, read
them as a rough ratio). Every tree must give the same `copies_sha256` (the same copies in every
shard).
"""

from __future__ import annotations

import argparse
import json
import sys

from benchlib import code_trees, emit, machine, run_in_tree, table, work_folder
from rerun_scale import add_tiny_arguments, write_tiny_recipe

FIRST_BUILD = """
import sys
from pathlib import Path
from dataprep.engine.build import build
from dataprep.engine.runner import InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.recipe.load import load_recipe
recipe = load_recipe(Path(sys.argv[1]))
build(recipe, BuildSettings(out=recipe.output.dir, progress=False), InProcessRunner())
"""
SHARD_WORKER = """
import inspect, json, pickle, resource, sys
from pathlib import Path
from dataprep.shard_writer import write_shard

roots = {}  # the sources' roots, for trees whose parts may refer to image files
if "roots" in inspect.signature(write_shard).parameters:
    from dataprep.engine.entry import adapter_of
    from dataprep.part_members import real_roots
    from dataprep.recipe.load import load_recipe
    recipe = load_recipe(Path(sys.argv[4]))
    roots["roots"] = real_roots(r for e in recipe.sources for r in adapter_of(recipe, e).roots())

def rss_kib():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])

work, copies_file, shard = map(Path, sys.argv[1:4])
base = rss_kib()
copies = pickle.loads(copies_file.read_bytes())
held = rss_kib()
result = write_shard(shard, work, copies, **roots)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"samples": result.samples, "shard_mb": round(result.bytes / 1e6, 1),
                  "import_rss_mib": round(base / 1024, 1), "copies_mib": round((held - base) / 1024, 1),
                  "peak_rss_mib": round(peak / 1024, 1), "growth_mib": round((peak - base) / 1024, 1)}))
"""
MEASURE = """
import hashlib, json, pickle, sys, time, tracemalloc
from pathlib import Path
from dataprep.engine.normalize_all import normalize_all
from dataprep.engine.plan import components_of, plan_mixture, shard_copies
from dataprep.engine.runner import InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.engine.shard_cache import copies_sha256
from dataprep.recipe.load import load_recipe
recipe = load_recipe(Path(sys.argv[1]))
settings = BuildSettings(out=recipe.output.dir, progress=False)
tracemalloc.start()
entries = normalize_all(recipe, settings, InProcessRunner())
gathered, gather_peak = tracemalloc.get_traced_memory()
tracemalloc.reset_peak()
shard_plan = plan_mixture(components_of(entries), recipe)
planned, plan_peak = tracemalloc.get_traced_memory()
tracemalloc.reset_peak()
hashes = hashlib.sha256()
for index, slots in enumerate(shard_plan):
    hashes.update(copies_sha256(shard_copies(index, slots, entries)).encode())
Path(sys.argv[2]).write_bytes(pickle.dumps(shard_copies(0, shard_plan[0], entries)))  # a worker's job
copies_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
kept = sum(len(entry.kept) for entry in entries)
del entries, shard_plan
clock = time.perf_counter()
entries = normalize_all(recipe, settings, InProcessRunner())
gather_s = time.perf_counter() - clock
shard_plan = plan_mixture(components_of(entries), recipe)
plan_s = time.perf_counter() - clock - gather_s
for index, slots in enumerate(shard_plan):
    copies_sha256(shard_copies(index, slots, entries))
copies_s = time.perf_counter() - clock - gather_s - plan_s
print(json.dumps({"kept": kept, "gathered": gathered, "gather_peak": gather_peak, "planned": planned,
                  "plan_peak": plan_peak, "copies_peak": copies_peak, "copies_sha256": hashes.hexdigest(),
                  "gather_s": gather_s, "plan_s": plan_s, "copies_s": copies_s}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_tiny_arguments(parser, records=200_000)
    args = parser.parse_args()
    args.trees = code_trees(parser, args.trees)
    with work_folder(args.work, "driver-memory-") as work:
        work = work.resolve()
        recipe_path = write_tiny_recipe(
            work, "memory", args.records, args.records // 2, args.unit_bytes, args.shard_size
        )
        if not (work / "out" / "manifest.json").exists():
            run_in_tree(args.trees[0], FIRST_BUILD, [str(recipe_path)])
        emit({"kind": "setup", "machine": machine(), "records": args.records})
        rows = []
        for tree in args.trees:
            copies = work / "shard0.pickle"
            result = json.loads(run_in_tree(tree, MEASURE, [str(recipe_path), str(copies)]).stdout)
            shard = [str(work / "out" / ".work"), str(copies), str(work / "shard0.tar"), str(recipe_path)]
            worker = json.loads(run_in_tree(tree, SHARD_WORKER, shard).stdout)
            emit({"kind": "shard_worker", "tree": str(tree), **worker})
            kept = result["kept"]
            row = {"kind": "summary", "tree": str(tree), "kept": kept}
            row["gathered_b_per_kept"] = round(result["gathered"] / kept)
            for stage in ("gather_peak", "planned", "plan_peak", "copies_peak"):
                row[f"{stage}_b_per_kept"] = round(result[stage] / kept)
            for stage in ("gather_s", "plan_s", "copies_s"):
                row[stage] = round(result[stage], 2)
            row["copies_sha256"] = result["copies_sha256"][:12]
            rows.append(row)
            emit(row)
    print(table(rows, list(rows[0])[1:]), file=sys.stderr)


if __name__ == "__main__":
    main()
