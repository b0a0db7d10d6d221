"""Build throughput: `dataprep build` (embedded Ray, CLI in a subprocess) against a hand-written
single-process converter (bench/handwritten_convert.py), on the same InternVL/LLaVA-layout dataset
of 640×480 JPEG photos, interleaved repetitions, medians reported.

Configurations: dataprep with --workers 2 and 1 (the `conversations` adapter's default 64 MiB work
units: one unit for a small jsonl), --workers 2 with the jsonl cut into `--split-units` units, --workers 2
with token statistics (a byte-level BPE of up to 32k tokens trained on the dataset's text), a re-run
of the completed --workers 2 build (everything cached), the baseline, and Ray start + stop alone.
Prints one JSON line per run, then one per configuration (medians, ratios to the baseline), then a table.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

from benchlib import (
    BIN,
    RAY_ENV,
    REPO,
    add_run_arguments,
    emit,
    machine,
    median_of,
    recipe,
    run_measured,
    table,
    work_folder,
    write_llava_dataset,
)

from dataprep.fixtures.tokenizer import write_tokenizer

RAY_ONLY = """
import logging, ray
ray.init(address="local", num_cpus={workers}, include_dashboard=False,
         object_store_memory=256 * 1024 * 1024, logging_level=logging.WARNING, log_to_driver=False)
ray.get(ray.remote(lambda: 1).remote())
ray.shutdown()
"""
CONFIGS = [
    "dataprep_w2",
    "dataprep_rerun",
    "dataprep_w1",
    "dataprep_w2_split",
    "dataprep_w2_tokens",
    "handwritten",
    "ray_only",
]


def dataprep_run(recipe_path: Path, out: Path, workers: int, fresh: bool) -> dict[str, Any]:
    """One `dataprep build`; adds the manifest's build.seconds (which includes Ray start/stop)."""
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    command = [str(BIN / "dataprep"), "build", str(recipe_path), "--out", str(out)]
    result = run_measured([*command, "--workers", str(workers), "--quiet"], RAY_ENV)
    manifest = json.loads((out / "manifest.json").read_text())
    result.update(
        build_s=manifest["build"]["seconds"],
        samples=manifest["totals"]["samples"],
        bytes=manifest["totals"]["bytes"],
    )
    return result


def handwritten_run(data: Path, out: Path, shard_size: int) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    script = REPO / "bench" / "handwritten_convert.py"
    command = [sys.executable, str(script), str(data / "train.jsonl"), str(data / "images"), str(out)]
    result = run_measured([*command, "--shard-size", str(shard_size)])
    result.update(
        samples=len((data / "train.jsonl").read_text().splitlines()),
        bytes=sum(path.stat().st_size for path in out.glob("*.tar")),
    )
    return result


def measure(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    data = work / "data"
    annotation = write_llava_dataset(data, args.samples)
    split = math.ceil(annotation.stat().st_size / args.split_units)
    recipes = work / "recipes"
    recipes.mkdir(exist_ok=True)
    whole = recipe(recipes / "whole.yaml", data, args.shard_size, None)
    cut = recipe(recipes / "split.yaml", data, args.shard_size, split)
    tokenizer = write_tokenizer(work / "tokenizer.json", annotation.read_text().splitlines(), 32000)
    counted = recipe(
        recipes / "tokens.yaml",
        data,
        args.shard_size,
        None,
        {"tokenizer": str(tokenizer), "image_tokens": 256},
    )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.configs}
    for rep in range(args.reps):
        for name in args.configs:
            if name == "dataprep_w2":
                result = dataprep_run(whole, work / "out_w2", 2, fresh=True)
            elif name == "dataprep_rerun":
                result = dataprep_run(whole, work / "out_w2", 2, fresh=False)
            elif name == "dataprep_w1":
                result = dataprep_run(whole, work / "out_w1", 1, fresh=True)
            elif name == "dataprep_w2_split":
                result = dataprep_run(cut, work / "out_split", 2, fresh=True)
            elif name == "dataprep_w2_tokens":
                result = dataprep_run(counted, work / "out_tokens", 2, fresh=True)
            elif name == "handwritten":
                result = handwritten_run(data, work / "out_handwritten", args.shard_size)
            else:
                code = RAY_ONLY.format(workers=2)
                result = run_measured([sys.executable, "-c", code], RAY_ENV)
            runs[name].append(result)
            emit({"kind": "run", "config": name, "rep": rep, **result})
    base = median_of(runs["handwritten"], "wall_s")
    summary = []
    for name, results in runs.items():
        row: dict[str, Any] = {"kind": "summary", "config": name, "reps": len(results)}
        for key in [
            "wall_s",
            "build_s",
            "max_single_rss_mib",
            "tree_peak_rss_mib",
            "tree_peak_pss_mib",
            "tree_peak_processes",
        ]:
            if key in results[0]:
                row[key] = median_of(results, key)
        row["wall_vs_handwritten"] = round(row["wall_s"] / base, 2)
        if "samples" in results[0] and name != "dataprep_rerun":
            row["samples_per_s"] = round(results[0]["samples"] / row["wall_s"], 1)
        summary.append(row)
        emit(row)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_run_arguments(parser, samples=3000, reps=2)
    parser.add_argument(
        "--split-units", type=int, default=4, help="work units of dataprep_w2_split (default: %(default)s)"
    )
    parser.add_argument(
        "--configs",
        type=lambda text: text.split(","),
        default=CONFIGS,
        help=f"comma-separated subset, with handwritten (default: {','.join(CONFIGS)})",
    )
    args = parser.parse_args()
    emit(
        {
            "kind": "setup",
            "machine": machine(),
            "samples": args.samples,
            "reps": args.reps,
            "shard_size": args.shard_size,
        }
    )
    with work_folder(args.work, "bench-build-") as folder:
        summary = measure(args, folder)
    columns = [
        "config",
        "wall_s",
        "build_s",
        "samples_per_s",
        "wall_vs_handwritten",
        "max_single_rss_mib",
        "tree_peak_pss_mib",
        "tree_peak_rss_mib",
        "tree_peak_processes",
    ]
    print(table(summary, columns), file=sys.stderr)


if __name__ == "__main__":
    main()
