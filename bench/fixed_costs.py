"""Issue 14's fixed costs, per code tree, side by side: the demo build's wall time against the time
its engine spent starting and stopping (from the manifest's stage timings), and a re-run of the
finished build against Ray's own start + one task + stop.

    .venv/bin/python bench/fixed_costs.py --trees /tmp/fc-base $PWD --reps 3     # ~3 min idle

Each build and re-run is a fresh `dataprep build` process (wall time including the interpreter and
imports), the trees interleaved per repetition; medians. The engine's time is the manifest's
`ray_start` + `ray_stop`; a tree from before `ray_stop` was timed stops Ray after its last stage,
so there it is `ray_start` + what `build.seconds` holds beyond the stages. JSON lines on stdout, a
table on stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchlib import (
    RAY_ENV,
    add_trees_argument,
    code_trees,
    emit,
    machine,
    median_of,
    run_measured,
    table,
    work_folder,
)
from build_throughput import RAY_ONLY


def engine_seconds(manifest: Path) -> float:
    """Seconds the build spent starting and stopping Ray, from its manifest."""
    build = json.loads(manifest.read_bytes())["build"]
    stages = build["stages"]
    if "ray_stop" in stages:
        return stages["ray_start"] + stages["ray_stop"]
    return stages["ray_start"] + max(0.0, build["seconds"] - sum(stages.values()))


def build_once(tree: Path, work: Path, out: Path) -> dict[str, Any]:
    """One `dataprep build` of the demo recipe into `out`: its wall time and engine time."""
    command = [sys.executable, "-m", "dataprep.cli", "build", str(tree / "recipes/demo.yaml")]
    command += ["--out", str(out), "--quiet"]
    result = run_measured(command, {**RAY_ENV, "PYTHONPATH": str(tree)}, cwd=work)
    engine = engine_seconds(out / "manifest.json")
    return {"wall_s": result["wall_s"], "engine_s": round(engine, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_trees_argument(parser)
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default: %(default)s)")
    parser.add_argument("--work", type=Path, help="keep the demo data and outputs here (default: a temp dir)")
    args = parser.parse_args()
    trees = code_trees(parser, args.trees)
    emit({"kind": "machine", **machine()})
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {str(t): {"build": [], "rerun": []} for t in trees}
    ray_only: list[dict[str, Any]] = []
    with work_folder(args.work, "fixed-costs-") as work:
        if not (work / "data" / "demo").exists():
            env = {**RAY_ENV, "PYTHONPATH": str(trees[-1])}
            fixtures = [sys.executable, "-m", "dataprep.cli", "fixtures", "data/demo"]
            subprocess.run(fixtures, cwd=work, env=env, check=True, capture_output=True)
        for rep in range(args.reps):
            for index, tree in enumerate(trees):
                out = work / f"out-{index}"
                shutil.rmtree(out, ignore_errors=True)
                for kind in ("build", "rerun"):
                    result = build_once(tree, work, out)
                    runs[str(tree)][kind].append(result)
                    emit({"kind": kind, "tree": str(tree), "rep": rep, **result})
            ray_only.append(run_measured([sys.executable, "-c", RAY_ONLY.format(workers=2)], RAY_ENV))
            emit({"kind": "ray_only", "rep": rep, **ray_only[-1]})
    fixed = median_of(ray_only, "wall_s")
    rows = []
    for tree in trees:
        build, rerun = runs[str(tree)]["build"], runs[str(tree)]["rerun"]
        wall, engine = median_of(build, "wall_s"), median_of(build, "engine_s")
        share = statistics.median(run["engine_s"] / run["wall_s"] for run in build)
        rows.append(
            {
                "tree": str(tree),
                "demo build wall s": wall,
                "engine start+stop s": engine,
                "engine share": round(share, 2),
                "re-run wall s": median_of(rerun, "wall_s"),
                "re-run engine s": median_of(rerun, "engine_s"),
                "re-run / Ray alone": round(median_of(rerun, "wall_s") / fixed, 2),
            }
        )
    emit({"kind": "summary", "ray_only_wall_s": fixed, "rows": rows})
    print(f"Ray start + one task + stop alone: {fixed} s (median of {len(ray_only)})", file=sys.stderr)
    print(table(rows, list(rows[0])), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
