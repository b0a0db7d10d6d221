"""Issue 14's fixed costs for an output in a store: the demo built into `s3://` on a loopback S3
server (moto, as the tests run it), then re-run finished, per code tree side by side: the re-run's
wall time and the requests it made of the store, by method (from the server's request log).

    .venv/bin/python bench/store_rerun.py --trees /tmp/base $PWD --reps 3

Each build and re-run is a fresh `dataprep build` process (wall time including the interpreter and
imports), into its own prefix and work folder per tree, the trees interleaved per repetition;
medians. JSON lines on stdout, a table on stderr.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
from pathlib import Path
from typing import Any

import benchlib

sys.path.insert(0, str(benchlib.REPO / "tests"))
from helpers.loopback_s3 import S3Server, s3_server  # the tests' loopback server

BUCKET = "bench"


def build_once(tree: Path, work: Path, server: S3Server, index: int) -> dict[str, Any]:
    """One `dataprep build` of the demo recipe into `s3://bench/<index>`: its wall time and the
    requests it made of the store, counted by method."""
    before = len(server.requests())
    command = [sys.executable, "-m", "dataprep.cli", "build", str(tree / "recipes/demo.yaml"), "--quiet"]
    command += ["--out", f"s3://{BUCKET}/{index}", "--work-dir", str(work / f"work-{index}")]
    result = benchlib.run_measured(
        command, {**benchlib.RAY_ENV, **server.env(), "PYTHONPATH": str(tree)}, cwd=work
    )
    methods = collections.Counter(request.split(" ", 1)[0] for request in server.requests()[before:])
    return {"wall_s": result["wall_s"], "requests": sum(methods.values()), **dict(sorted(methods.items()))}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    benchlib.add_trees_argument(parser)
    parser.add_argument("--reps", type=int, default=3, help="interleaved re-runs (default: %(default)s)")
    parser.add_argument("--work", type=Path, help="keep the demo data and work folders here (default: temp)")
    args = parser.parse_args()
    trees = benchlib.code_trees(parser, args.trees)
    benchlib.emit({"kind": "machine", **benchlib.machine()})
    reruns: dict[Path, list[dict[str, Any]]] = {tree: [] for tree in trees}
    with benchlib.work_folder(args.work, "store-rerun-") as work, s3_server(work) as server:
        subprocess.run(
            [sys.executable, "-m", "dataprep.cli", "fixtures", "data/demo"],
            cwd=work,
            env={**benchlib.RAY_ENV, "PYTHONPATH": str(trees[-1])},
            check=True,
            capture_output=True,
        )
        server.create_bucket(BUCKET)
        builds = {tree: build_once(tree, work, server, index) for index, tree in enumerate(trees)}
        for tree, result in builds.items():
            benchlib.emit({"kind": "build", "tree": str(tree), **result})
        for rep in range(args.reps):
            for index, tree in enumerate(trees):
                reruns[tree].append(build_once(tree, work, server, index))
                benchlib.emit({"kind": "rerun", "tree": str(tree), "rep": rep, **reruns[tree][-1]})
    rows = [
        {
            "tree": str(tree),
            "build wall s": builds[tree]["wall_s"],
            "build requests": builds[tree]["requests"],
            "re-run wall s": benchlib.median_of(runs, "wall_s"),
            "re-run requests": benchlib.median_of(runs, "requests"),
            "by method": ", ".join(f"{key} {value}" for key, value in runs[-1].items() if key.isupper()),
        }
        for tree, runs in reruns.items()
    ]
    benchlib.emit({"kind": "summary", "rows": rows})
    print(benchlib.table(rows, list(rows[0])), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
