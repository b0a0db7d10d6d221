"""Issue 14's fixed costs, per code tree (and executor), side by side: the demo build's wall time
against the time its engine spent starting and stopping (from the manifest's stage timings), and a
re-run of the finished build against Ray's own start + one task + stop; with `--start-methods`, the
demo build on local worker processes started by each multiprocessing start method; with
`--decontaminated N`, a recipe with `decontaminate:` (the planted overlaps of
`dataprep.fixtures.overlaps`, N eval items, `mode: drop`) in place of the demo.

    .venv/bin/python bench/fixed_costs.py --trees /tmp/fc-base $PWD --reps 3     # ~3 min idle
    .venv/bin/python bench/fixed_costs.py --trees $PWD --executors processes ray --start-methods
    .venv/bin/python bench/fixed_costs.py --trees /tmp/fc-base $PWD --decontaminated 6

Each build and re-run is a fresh `dataprep build` process (wall time including the interpreter and
imports), the trees (and `--executor`s, for trees that have the option) interleaved per repetition;
medians. The engine's time is the manifest's `engine_start` + `engine_stop`; trees from before the
executor choice named them `ray_start` + `ray_stop`, and a tree from before `ray_stop` was timed
stops Ray after its last stage, so there it is `ray_start` + what `build.seconds` holds beyond the
stages. JSON lines on stdout, a table on stderr.
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

from dataprep.fixtures import overlaps as planted

# `dataprep build` with the local workers started by another multiprocessing start method.
WITH_START_METHOD = (
    "import sys\n"
    "from dataprep.engine import process_runner\n"
    "process_runner.START_METHOD = sys.argv[1]\n"
    "from dataprep.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)
START_METHODS = ("fork", "forkserver", "spawn")


def engine_seconds(manifest: Path) -> float:
    """Seconds the build spent starting and stopping its engine, from its manifest."""
    build = json.loads(manifest.read_bytes())["build"]
    stages = build["stages"]
    if "engine_stop" in stages:
        return stages["engine_start"] + stages["engine_stop"]
    if "ray_stop" in stages:
        return stages["ray_start"] + stages["ray_stop"]
    return stages["ray_start"] + max(0.0, build["seconds"] - sum(stages.values()))


def build_once(
    tree: Path,
    work: Path,
    out: Path,
    executor: str | None,
    start_method: str | None = None,
    recipe: Path | None = None,
) -> dict[str, Any]:
    """One `dataprep build` of `recipe` (default: the tree's demo recipe) into `out` (with
    `--executor` unless None; its local workers started by `start_method` unless None): its wall
    time and engine time."""
    dataprep = ["-c", WITH_START_METHOD, start_method] if start_method else ["-m", "dataprep.cli"]
    command = [sys.executable, *dataprep, "build", str(recipe or tree / "recipes/demo.yaml")]
    command += ["--out", str(out), "--quiet"] + (["--executor", executor] if executor else [])
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
    parser.add_argument(
        "--executors",
        nargs="+",
        choices=("processes", "ray"),
        help="build the last tree with each of these `--executor`s (default: every tree's default)",
    )
    parser.add_argument(
        "--start-methods",
        action="store_true",
        help="also build the demo with the last tree's local workers started by fork, forkserver, spawn",
    )
    parser.add_argument(
        "--decontaminated",
        type=int,
        metavar="ITEMS",
        help="build the planted overlaps with `decontaminate:` (ITEMS eval items) instead of the demo",
    )
    args = parser.parse_args()
    trees = code_trees(parser, args.trees)
    emit({"kind": "machine", **machine()})
    runners = [(tree, None) for tree in trees[:-1]]
    runners += [(trees[-1], executor) for executor in args.executors or [None]]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        _name(tree, executor): {"build": [], "rerun": []} for tree, executor in runners
    }
    ray_only: list[dict[str, Any]] = []
    by_method: dict[str, list[dict[str, Any]]] = {method: [] for method in START_METHODS}
    with work_folder(args.work, "fixed-costs-") as work:
        recipe = None
        if args.decontaminated:
            recipe = work / "planted.yaml"
            planted.generate(work / "planted", seed=0, items=args.decontaminated)
            recipe.write_text(planted.recipe_yaml(work / "planted", work / "out", "drop", again=True))
        elif not (work / "data" / "demo").exists():
            env = {**RAY_ENV, "PYTHONPATH": str(trees[-1])}
            fixtures = [sys.executable, "-m", "dataprep.cli", "fixtures", "data/demo"]
            subprocess.run(fixtures, cwd=work, env=env, check=True, capture_output=True)
        for rep in range(args.reps):
            for index, (tree, executor) in enumerate(runners):
                out = work / f"out-{index}"
                shutil.rmtree(out, ignore_errors=True)
                for kind in ("build", "rerun"):
                    result = build_once(tree, work, out, executor, recipe=recipe)
                    runs[_name(tree, executor)][kind].append(result)
                    emit({"kind": kind, "tree": _name(tree, executor), "rep": rep, **result})
            ray_only.append(run_measured([sys.executable, "-c", RAY_ONLY.format(workers=2)], RAY_ENV))
            emit({"kind": "ray_only", "rep": rep, **ray_only[-1]})
            for method in START_METHODS if args.start_methods else ():
                out = work / "out-start-method"
                shutil.rmtree(out, ignore_errors=True)
                by_method[method].append(build_once(trees[-1], work, out, "processes", method, recipe))
                emit({"kind": "start_method", "method": method, "rep": rep, **by_method[method][-1]})

    fixed = median_of(ray_only, "wall_s")
    wall_column = f"{'planted' if args.decontaminated else 'demo'} build wall s"
    rows = []
    for tree, executor in runners:
        build, rerun = runs[_name(tree, executor)]["build"], runs[_name(tree, executor)]["rerun"]
        wall, engine = median_of(build, "wall_s"), median_of(build, "engine_s")
        share = statistics.median(run["engine_s"] / run["wall_s"] for run in build)
        rows.append(
            {
                "tree": _name(tree, executor),
                wall_column: wall,
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
    if args.start_methods:
        starts = [
            {
                "start method": method,
                wall_column: median_of(timings, "wall_s"),
                "engine start+stop s": median_of(timings, "engine_s"),
            }
            for method, timings in by_method.items()
        ]
        emit({"kind": "start_methods", "rows": starts})
        print(table(starts, list(starts[0])), file=sys.stderr)
    return 0


def _name(tree: Path, executor: str | None) -> str:
    return f"{tree} --executor {executor}" if executor else str(tree)


if __name__ == "__main__":
    sys.exit(main())
