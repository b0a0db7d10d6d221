"""The two per-sample stages in one process, without Ray, code tree against code tree:
`normalize_unit` over one unit of `--samples` 640×480 JPEG photos (the whole jsonl, images kept, or
re-encoded to `--max-side`), then `write_shard` of the first 1,000 kept samples of that part; wall and
CPU seconds of each.

Each tree in `--trees` (folders holding a `dataprep` package, e.g. `git archive b216b43 | tar -x -C
/tmp/base` and this checkout; the first is the baseline) runs in a fresh process, in turn, `--reps`
times; medians and the ratios to the first tree.

    .venv/bin/python bench/stage_speed.py --trees /tmp/base $PWD --reps 3 --max-side 1024 448
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchlib import (
    add_trees_argument,
    code_trees,
    emit,
    machine,
    run_in_tree,
    table,
    work_folder,
    write_llava_dataset,
)

CHILD = """
import inspect, json, os, sys, time
from pathlib import Path
from dataprep.normalize import index_path, normalize_unit
from dataprep.recipe.model import ImagePolicy
from dataprep.shard_writer import SampleCopy, write_shard
from dataprep.sources.conversations import Conversations

data, work, side = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
whole = {"unit_records": 10**12} if "unit_records" in Conversations.Options.model_fields else {}
source = Conversations(data, Conversations.Options(file="train.jsonl", image_root="images", unit_bytes=10**12, **whole))
[unit] = source.units()
part = work / "part.tar"
started, cpu = time.perf_counter(), time.process_time()
normalize_unit(source, unit, "photos", ImagePolicy(max_side=side), part, None)
normalized, normalized_cpu = time.perf_counter() - started, time.process_time() - cpu
records = json.loads(index_path(part).read_bytes())["records"]
copies = [
    SampleCopy(f"000000_{i:06d}", part.name, tuple(tuple(m) for m in r["members"]), r["digest"])
    for i, r in enumerate(records) if "members" in r
][:1000]
started, cpu = time.perf_counter(), time.process_time()
roots = [os.path.realpath(root) for root in source.roots()]
write_shard(work / "shard.tar", work, copies, **({"roots": roots} if "roots" in inspect.signature(write_shard).parameters else {}))
written, written_cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({
    "normalize_s": round(normalized, 3), "write_1000_s": round(written, 3),
    "normalize_cpu_s": round(normalized_cpu, 3), "write_1000_cpu_s": round(written_cpu, 3),
}))
"""

KEYS = ("normalize_s", "normalize_cpu_s", "write_1000_s", "write_1000_cpu_s")
"""Wall and CPU seconds (`time.process_time`: this process's core time, which depends less on the
machine's other load; it leaves out waiting for the disk, e.g. in `fsync`)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000, help="(default: %(default)s)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default: %(default)s)")
    parser.add_argument("--max-side", type=int, nargs="+", default=[1024, 448], help="(default: 1024 448)")
    add_trees_argument(parser)
    parser.add_argument("--work", type=Path, help="keep the data here for another run")
    args = parser.parse_args()
    trees = code_trees(parser, args.trees)
    emit({"kind": "setup", "machine": machine(), "samples": args.samples, "reps": args.reps})
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    with work_folder(args.work, "stage-speed-") as work:
        work = work.resolve()
        write_llava_dataset(work / "data", args.samples)
        for rep in range(args.reps):
            for side in args.max_side:
                for tree in trees:
                    (work / "out").mkdir(exist_ok=True)
                    done = run_in_tree(tree, CHILD, [str(work / "data"), str(work / "out"), str(side)])
                    result = json.loads(done.stdout.splitlines()[-1])
                    runs.setdefault((str(tree), side), []).append(result)
                    emit({"kind": "run", "tree": str(tree), "max_side": side, "rep": rep, **result})
    rows = []
    for (tree, side), results in runs.items():
        row = {"kind": "summary", "tree": tree, "max_side": side}
        for key in KEYS:
            row[key] = round(statistics.median(result[key] for result in results), 3)
            first = statistics.median(result[key] for result in runs[(str(trees[0]), side)])
            row[f"{key}_vs_first"] = round(first / row[key], 2)
        rows.append(row)
        emit(row)
    print(
        table(
            rows,
            ["tree", "max_side", *(column for key in KEYS for column in (key, f"{key}_vs_first"))],
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
