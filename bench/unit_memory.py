"""Worker memory of a work unit: `normalize_unit` on one `conversations` unit of `--samples`
640×480 JPEG photos (~80 KB each, bench/benchlib.py), the whole jsonl as one unit, as a Ray worker
runs it but without Ray.

Each tree in `--trees` (folders holding a `dataprep` package, e.g. a worktree of an older commit and
this checkout; the first is the baseline of the ratios) runs it in a fresh process with
`PYTHONPATH=<tree>`, in turn, `--reps` times: seconds of the `normalize_unit` call, the process's
peak RSS (`ru_maxrss`), its RSS after the imports and the peak's growth over it, and the sha256 of
the part and of its index (equal across trees when the output is byte-identical).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

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
import hashlib, json, resource, sys, time
from pathlib import Path
from dataprep.normalize import index_path, normalize_unit
from dataprep.recipe.model import ImagePolicy
from dataprep.sources.conversations import Conversations

def rss_kib():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])

data, part = Path(sys.argv[1]), Path(sys.argv[2])
size = (data / "train.jsonl").stat().st_size
whole = {"unit_records": 10**12} if "unit_records" in Conversations.Options.model_fields else {}
options = Conversations.Options(file="train.jsonl", image_root="images", unit_bytes=size + 1, **whole)
source = Conversations(data, options)
[unit] = source.units()
policy = ImagePolicy(max_side=1024, format="jpeg", quality=95)
base = rss_kib()
started = time.perf_counter()
summary = normalize_unit(source, unit, "photos", policy, part, None)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
print(json.dumps({
    "wall_s": round(seconds, 3),
    "peak_rss_mib": round(peak / 1024, 1),
    "import_rss_mib": round(base / 1024, 1),
    "growth_mib": round((peak - base) / 1024, 1),
    "kept": summary.kept,
    "part_mb": round(part.stat().st_size / 1e6, 1),
    "part_sha256": digest(part),
    "index_sha256": digest(index_path(part)),
}))
"""


def normalize(tree: Path, data: Path, part: Path) -> dict[str, Any]:
    """One `normalize_unit` in a fresh process importing `dataprep` from `tree` (also its working
    folder: `python -c` puts the working folder before PYTHONPATH); `data`, `part`: absolute."""
    part.unlink(missing_ok=True)
    return json.loads(run_in_tree(tree, CHILD, [str(data), str(part)]).stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--samples", type=int, default=2000, help="records/photos (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default: %(default)s)")
    add_trees_argument(parser)
    parser.add_argument("--work", type=Path, help="keep the dataset (and the parts) here for another run")
    args = parser.parse_args()
    trees = code_trees(parser, args.trees)
    with work_folder(args.work, "unit-memory-") as work:
        work = work.resolve()
        data = work / "data"
        write_llava_dataset(data, args.samples)
        images_mb = sum(path.stat().st_size for path in (data / "images").iterdir()) / 1e6
        emit(
            {
                "kind": "setup",
                "machine": machine(),
                "samples": args.samples,
                "images_mb": round(images_mb, 1),
                "reps": args.reps,
            }
        )
        runs: dict[str, list[dict[str, Any]]] = {str(tree): [] for tree in trees}
        for rep in range(args.reps):
            for number, tree in enumerate(trees):
                runs[str(tree)].append(normalize(tree, data, work / f"part-{number}.tar"))
                load = round(os.getloadavg()[0], 2)
                emit(
                    {"kind": "run", "tree": str(tree), "rep": rep, **runs[str(tree)][-1], "load_avg_1m": load}
                )
    rows = []
    for tree, results in runs.items():
        numbers = [key for key, value in results[0].items() if isinstance(value, float)]
        row = {key: round(statistics.median(result[key] for result in results), 3) for key in numbers}
        for key in ("wall_s", "peak_rss_mib", "growth_mib"):
            first = statistics.median(result[key] for result in runs[str(trees[0])])
            ratio = round(row[key] / first, 2) if first else ""
            row[f"{key.removesuffix('_mib').removesuffix('_s')}_vs_first"] = ratio
        for key in ("part_sha256", "index_sha256"):
            row[key] = results[0][key] if len({result[key] for result in results}) == 1 else "varies"
        rows.append({"kind": "summary", "tree": tree, "reps": len(results), **row})
        emit(rows[-1])
    print(table(rows, list(rows[0])[1:]), file=sys.stderr)


if __name__ == "__main__":
    main()
