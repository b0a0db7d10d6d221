"""Issue 14's fixed costs, per code tree (and executor), side by side: the demo build's wall time
against the time its engine spent starting and stopping (from the manifest's stage timings), and a
re-run of the finished build against Ray's own start + one task + stop; with `--pool-starts`, what a
pool of local worker processes costs to start, per multiprocessing start method.

    .venv/bin/python bench/fixed_costs.py --trees /tmp/fc-base $PWD --reps 3     # ~3 min idle
    .venv/bin/python bench/fixed_costs.py --trees $PWD --executors processes ray --pool-starts

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

# In a fresh driver that has imported the engine (as a build has): a ProcessRunner of 2 workers on
# one start method, started and run until each worker has run a job (its module imported), then stopped.
POOL_START = """
import json, sys, time
import dataprep.engine.build
from dataprep.engine import process_runner
from dataprep.engine.entry import HashJob

process_runner.START_METHOD = sys.argv[1]
clock = time.perf_counter()
runner = process_runner.ProcessRunner(2, progress=False)
runner.run("hash", [(str(index), HashJob("/dev/null")) for index in range(2)], 2)
ready = time.perf_counter()
runner.stop()
stopped = time.perf_counter()
print(json.dumps({"start_s": round(ready - clock, 3), "stop_s": round(stopped - ready, 3)}))
"""
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


def build_once(tree: Path, work: Path, out: Path, executor: str | None) -> dict[str, Any]:
    """One `dataprep build` of the demo recipe into `out` (with `--executor` unless None): its wall
    time and engine time."""
    command = [sys.executable, "-m", "dataprep.cli", "build", str(tree / "recipes/demo.yaml")]
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
        "--pool-starts", action="store_true", help="also time a pool's start per start method"
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
    pools: dict[str, list[dict[str, Any]]] = {method: [] for method in START_METHODS}
    with work_folder(args.work, "fixed-costs-") as work:
        if not (work / "data" / "demo").exists():
            env = {**RAY_ENV, "PYTHONPATH": str(trees[-1])}
            fixtures = [sys.executable, "-m", "dataprep.cli", "fixtures", "data/demo"]
            subprocess.run(fixtures, cwd=work, env=env, check=True, capture_output=True)
        for rep in range(args.reps):
            for index, (tree, executor) in enumerate(runners):
                out = work / f"out-{index}"
                shutil.rmtree(out, ignore_errors=True)
                for kind in ("build", "rerun"):
                    result = build_once(tree, work, out, executor)
                    runs[_name(tree, executor)][kind].append(result)
                    emit({"kind": kind, "tree": _name(tree, executor), "rep": rep, **result})
            ray_only.append(run_measured([sys.executable, "-c", RAY_ONLY.format(workers=2)], RAY_ENV))
            emit({"kind": "ray_only", "rep": rep, **ray_only[-1]})
            for method in START_METHODS if args.pool_starts else ():
                env = {**RAY_ENV, "PYTHONPATH": str(trees[-1])}
                timed = subprocess.run(
                    [sys.executable, "-c", POOL_START, method], env=env, capture_output=True, check=True
                )
                pools[method].append(json.loads(timed.stdout))
                emit({"kind": "pool_start", "method": method, "rep": rep, **pools[method][-1]})
    fixed = median_of(ray_only, "wall_s")
    rows = []
    for tree, executor in runners:
        build, rerun = runs[_name(tree, executor)]["build"], runs[_name(tree, executor)]["rerun"]
        wall, engine = median_of(build, "wall_s"), median_of(build, "engine_s")
        share = statistics.median(run["engine_s"] / run["wall_s"] for run in build)
        rows.append(
            {
                "tree": _name(tree, executor),
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
    if args.pool_starts:
        starts = [
            {
                "start method": method,
                "pool start s": median_of(runs, "start_s"),
                "stop s": median_of(runs, "stop_s"),
            }
            for method, timings in pools.items()
        ]
        emit({"kind": "pool_starts", "rows": starts})
        print(table(starts, list(starts[0])), file=sys.stderr)
    return 0


def _name(tree: Path, executor: str | None) -> str:
    return f"{tree} --executor {executor}" if executor else str(tree)


if __name__ == "__main__":
    sys.exit(main())
