"""The driver at scale: re-runs of a finished build (everything cached) of many samples with tiny
images, so that the per-sample work of the driver (reading part indexes, planning, per-shard plan
hashes, submitting shard tasks) shows instead of image decoding.

The data: `--records` LLaVA-layout records (1-3 turns) sharing `--pool` distinct 8×8 PNG/JPEG images,
read by the `conversations` adapter in units of `--unit-bytes`. The build runs once (first tree),
then each tree in `--trees` (folders holding a `dataprep` package, e.g. a worktree of main and this
checkout) re-runs it in turn, `--reps` times, in a fresh process: wall seconds, the manifest's
stages and the driver's own peak RSS (VmHWM; Ray's processes not included).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import (
    RAY_ENV,
    add_trees_argument,
    code_trees,
    emit,
    machine,
    run_in_tree,
    table,
    work_folder,
)
from PIL import Image

DRIVER = """
import sys
from dataprep.cli import main
code = main(["build", sys.argv[1], "--workers", "2", "--quiet"])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("VMHWM_KIB", hwm.split()[1], file=sys.stderr)
sys.exit(code)
"""
WORDS = [
    "the",
    "a",
    "of",
    "chart",
    "image",
    "what",
    "is",
    "shown",
    "in",
    "this",
    "picture",
    "describe",
    "value",
    "bar",
    "line",
    "colour",
]


def write_tiny_dataset(folder: Path, records: int, pool: int) -> None:
    """`folder/train.jsonl` + `folder/images/` (`pool` distinct 8×8 images); reuses a complete one."""
    annotation = folder / "train.jsonl"
    if annotation.exists() and sum(1 for _ in annotation.open()) == records:
        return
    rng = random.Random(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(pool):
        image = Image.new("RGB", (8, 8), tuple(rng.randrange(256) for _ in range(3)))
        image.putpixel((index % 8, index // 8 % 8), (index % 256, 0, 0))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG" if index % 2 else "JPEG")
        names.append(f"{index:08d}.{'png' if index % 2 else 'jpg'}")
        (folder / "images" / names[-1]).write_bytes(buffer.getvalue())
    with annotation.open("w") as handle:
        for index in range(records):
            conversations = []
            for turn in range(rng.choice([1, 1, 2, 3])):
                question = " ".join(rng.choices(WORDS, k=rng.randrange(5, 15))) + "?"
                conversations += [
                    {"from": "human", "value": ("<image>\n" if turn == 0 else "") + question},
                    {"from": "gpt", "value": " ".join(rng.choices(WORDS, k=rng.randrange(10, 40)))},
                ]
            record = {"id": str(index), "image": rng.choice(names), "conversations": conversations}
            handle.write(json.dumps(record) + "\n")


def add_tiny_arguments(parser: argparse.ArgumentParser, records: int) -> None:
    """`--records`, `--unit-bytes`, `--shard-size`, `--trees` and `--work` of the tiny-image benches."""
    parser.add_argument("--records", type=int, default=records, help="(default: %(default)s)")
    parser.add_argument("--unit-bytes", type=int, default=4_000_000, help="(default: %(default)s)")
    parser.add_argument("--shard-size", type=int, default=2000, help="(default: %(default)s)")
    add_trees_argument(parser)
    parser.add_argument("--work", type=Path, help="keep the data and the build here for another run")


def write_tiny_recipe(
    work: Path, name: str, records: int, pool: int, unit_bytes: int, shard_size: int
) -> Path:
    """`write_tiny_dataset` in `work/data` and a recipe of it (`work/recipe.json`, output `work/out`)."""
    write_tiny_dataset(work / "data", records, pool)
    source = {"source": "conversations", "name": "tiny", "path": str(work / "data")}
    source.update(file="train.jsonl", image_root="images", unit_bytes=unit_bytes)
    content = {"name": name, "seed": 0, "sources": [source]}
    content["output"] = {"dir": str(work / "out"), "shard_size": shard_size}
    recipe_path = work / "recipe.json"
    recipe_path.write_text(json.dumps(content))  # JSON is YAML
    return recipe_path


def build(tree: Path, recipe_path: Path, manifest: Path) -> dict[str, Any]:
    """One build in a fresh process importing `dataprep` from `tree` (also its working folder:
    `python -c` puts the working folder before PYTHONPATH); `tree`, `recipe_path`: absolute."""
    started = time.perf_counter()
    done = run_in_tree(tree, DRIVER, [str(recipe_path)], RAY_ENV)
    wall = time.perf_counter() - started
    hwm = next(line for line in done.stderr.splitlines() if line.startswith("VMHWM_KIB"))
    content = json.loads(manifest.read_text())
    return {
        "wall_s": round(wall, 3),
        "driver_peak_rss_mib": round(int(hwm.split()[1]) / 1024, 1),
        **{f"{stage}_s": seconds for stage, seconds in content["build"]["stages"].items()},
        "content_sha256": content["content_sha256"][:12],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_tiny_arguments(parser, records=100_000)
    parser.add_argument("--pool", type=int, help="distinct images (default: records / 2)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default: %(default)s)")
    args = parser.parse_args()
    args.trees = code_trees(parser, args.trees)
    with work_folder(args.work, "rerun-scale-") as work:
        work = work.resolve()
        pool = args.pool or args.records // 2
        recipe_path = write_tiny_recipe(work, "rerun", args.records, pool, args.unit_bytes, args.shard_size)
        manifest = work / "out" / "manifest.json"
        emit(
            {
                "kind": "setup",
                "machine": machine(),
                "records": args.records,
                "first_build": build(args.trees[0], recipe_path, manifest),
            }
        )
        runs: dict[str, list[dict[str, Any]]] = {str(tree): [] for tree in args.trees}
        for rep in range(args.reps):
            for tree in args.trees:
                runs[str(tree)].append(build(tree, recipe_path, manifest))
                emit({"kind": "run", "tree": str(tree), "rep": rep, **runs[str(tree)][-1]})
    rows = []
    for tree, results in runs.items():
        numbers = [key for key, value in results[0].items() if isinstance(value, float)]
        row = {key: round(statistics.median(result[key] for result in results), 3) for key in numbers}
        rows.append({"kind": "summary", "tree": tree, **row, "content_sha256": results[0]["content_sha256"]})
        emit(rows[-1])
    print(table(rows, list(rows[0])[1:]), file=sys.stderr)


if __name__ == "__main__":
    main()
