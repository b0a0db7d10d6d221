"""Issue 14's table in one command: dataprep against the I/O limit, a naive one-process converter and
img2dataset (in its own virtual environment, installed as a user would), on the same generated data
(640×480 photo-like JPEGs in one LLaVA-style `.jsonl`), side by side, interleaved, wall time
including start-up; then the ratios.

    .venv/bin/python bench/speed.py --samples 8000            # ~10 min on 2 shared cores
    .venv/bin/python bench/speed.py --configs naive,base_w2,dp_w2 --baseline-tree /tmp/base
    .venv/bin/python bench/speed.py --memory 10000,100000     # driver/worker peak RSS, tiny images

Configurations (`--configs`): `io_limit` (the same bytes written into tars, nothing checked),
`naive` (read, PIL full decode, `tarfile`), `i2d_copy` / `i2d_reencode` / `i2d_448` (img2dataset,
2 processes: bytes copied with no decode / decode + re-encode / `keep_ratio` 448), `dp_w1`, `dp_w2`
(`dataprep build`, originals kept, on its default executor: local processes), `dp_w1_cpu0` (`dp_w1`
with its process tree pinned to one CPU, `taskset -c 0`: 1 worker on 1 core, where `dp_w1` lends the
idle core to the driver and the kernel's writes), `dp_shm_w1` / `dp_shm_w2` (`dp_w1` / `dp_w2` with
the output on tmpfs, `/dev/shm`: the disk taken out of the build), `dp_ray_w2` (the same on an embedded Ray,
`--executor ray`), `dp_448_w1` / `dp_448_w2` (`max_side: 448`), `dp_rerun` (the finished `dp_w2`
build again), `ray_only` (Ray start + one task + stop), `base_w2` / `base_448_w2` (`dp_w2` / `dp_448_w2` with the
`dataprep` of `--baseline-tree`, e.g. `git archive b216b43 | tar -x -C /tmp/base`; not run unless
named). img2dataset goes into `--i2d-venv` (made with
`python -m venv` + `pip install img2dataset` when absent). JSON lines on stdout, a table on stderr.
Each run starts after a `sync`; `--tree-memory` also samples every run's process tree for its peak
PSS (off by default: reading the workers' smaps slows them by a few %).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
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
    run_measured,
    table,
    work_folder,
    write_llava_dataset,
)
from build_throughput import RAY_ONLY
from PIL import Image

CONFIGS = [
    "io_limit",
    "naive",
    "i2d_copy",
    "i2d_reencode",
    "i2d_448",
    "dp_w1",
    "dp_w1_cpu0",
    "dp_w2",
    "dp_shm_w1",
    "dp_shm_w2",
    "dp_ray_w2",
    "dp_rerun",
    "dp_448_w1",
    "dp_448_w2",
    "ray_only",
]
BASELINE = "naive"
TMPFS = Path("/dev/shm")


def _tar_add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def convert(annotation: Path, images: Path, out: Path, shard_size: int, decode: bool) -> int:
    """One process: each record's image read (and, with `decode`, fully decoded by PIL; a failure
    skips the record) and written with the record's json into tars of `shard_size` records."""
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    with annotation.open("rb") as lines:
        while chunk := list(itertools.islice(lines, shard_size)):
            with tarfile.open(out / f"{written // shard_size:06d}.tar", "w") as archive:
                for line in chunk:
                    record = json.loads(line)
                    data = (images / record["image"]).read_bytes()
                    if decode:
                        try:
                            with Image.open(io.BytesIO(data)) as image:
                                image.load()
                        except (OSError, SyntaxError, ValueError):
                            continue
                    _tar_add(archive, f"{written:09d}.jpg", data)
                    _tar_add(archive, f"{written:09d}.json", line)
                    written += 1
    return written


def ensure_img2dataset(venv: Path) -> Path:
    """img2dataset's command in its own virtual environment, installed there when absent."""
    command = venv / "bin" / "img2dataset"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "img2dataset"], check=True)
    return command


def img2dataset_input(data: Path, annotation: Path) -> Path:
    """A csv of the images' file:// URLs and first human turns, the list img2dataset reads."""
    import csv

    listing = data / "img2dataset.csv"
    with listing.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "caption"])
        for line in annotation.open():
            record = json.loads(line)
            path = (data / "images" / record["image"]).resolve()
            caption = " ".join(record["conversations"][0]["value"].split())  # its CSV reader wants one line
            writer.writerow([path.as_uri(), caption])
    return listing


def img2dataset_run(
    command: Path, listing: Path, out: Path, shard_size: int, mode: str, sample_tree: bool
) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    options = {
        "copy": ["--disable_all_reencoding", "True"],
        "reencode": ["--resize_mode", "no"],
        "448": ["--resize_mode", "keep_ratio", "--image_size", "448", "--resize_only_if_bigger", "True"],
    }[mode]
    arguments = [
        str(command),
        "--url_list", str(listing), "--input_format", "csv", "--url_col", "url", "--caption_col", "caption",
        "--output_folder", str(out), "--output_format", "webdataset",
        "--processes_count", "2", "--thread_count", "4", "--number_sample_per_shard", str(shard_size),
        "--distributor", "multiprocessing", "--enable_wandb", "False", "--timeout", "30",
        *options,
    ]  # fmt: skip
    result = run_measured(arguments, {"NO_ALBUMENTATIONS_UPDATE": "1"}, sample_tree=sample_tree)
    stats = [json.loads(path.read_text()) for path in out.glob("*_stats.json")]
    result["samples"] = sum(stat["successes"] for stat in stats)
    return result


def dataprep_recipe(path: Path, data: Path, shard_size: int, max_side: int) -> Path:
    content = {
        "name": "bench",
        "seed": 0,
        "output": {"dir": str(path.parent / "unused"), "shard_size": shard_size},
        "image": {"max_side": max_side, "format": "jpeg", "quality": 95},
        "sources": [
            {"source": "conversations", "name": "photos", "path": str(data), "file": "train.jsonl", "image_root": "images"}
        ],
    }  # fmt: skip
    path.write_text(json.dumps(content))  # JSON is YAML
    return path


def dataprep_run(
    recipe: Path,
    out: Path,
    workers: int,
    fresh: bool,
    tree: Path | None = None,
    executor: str | None = None,
    sample_tree: bool = True,
    cpus: str | None = None,
) -> dict[str, Any]:
    """One `dataprep build` (of this checkout, or of `tree`: a folder holding another `dataprep`), on
    its default executor or `executor`; with `cpus`, its whole process tree pinned to them (`taskset`)."""
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    command = [
        *(["taskset", "-c", cpus] if cpus else []),
        str(BIN / "dataprep"),
        "build",
        str(recipe),
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--quiet",
        *(["--executor", executor] if executor else []),
    ]
    # run from the tree itself: Ray puts the working folder on its workers' import path
    env = {**RAY_ENV, "PYTHONPATH": str(tree or REPO)}
    result = run_measured(command, env, cwd=tree or REPO, sample_tree=sample_tree)
    manifest = json.loads((out / "manifest.json").read_text())
    result.update(samples=manifest["totals"]["samples"], stages=manifest["build"]["stages"])
    return result


def child_run(kind: str, data: Path, out: Path, shard_size: int, sample_tree: bool) -> dict[str, Any]:
    """The I/O limit or the naive converter, in a fresh process (its start-up counted)."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, __file__, "--child", kind, "--work", str(data), "--out", str(out)]
    result = run_measured([*command, "--shard-size", str(shard_size)], sample_tree=sample_tree)
    result["samples"] = json.loads((out / "count.json").read_text())
    return result


def measure(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    data = work / "data"
    annotation = write_llava_dataset(data, args.samples)
    recipes = work / "recipes"
    recipes.mkdir(exist_ok=True)
    kept = dataprep_recipe(recipes / "kept.yaml", data, args.shard_size, 1024)
    small = dataprep_recipe(recipes / "448.yaml", data, args.shard_size, 448)
    i2d = listing = None
    if any(name.startswith("i2d_") for name in args.configs):
        i2d = ensure_img2dataset(args.i2d_venv)
        listing = img2dataset_input(data, annotation)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.configs}
    sampled = args.tree_memory
    for rep in range(args.reps):
        for name in args.configs:
            if name in ("io_limit", "naive"):
                result = child_run(name, data, work / f"out_{name}", args.shard_size, sampled)
            elif name.startswith("i2d_"):
                assert i2d is not None and listing is not None
                out = work / f"out_{name}"
                result = img2dataset_run(i2d, listing, out, args.shard_size, name[4:], sampled)
            elif name in ("dp_w1", "dp_w2", "dp_w1_cpu0"):
                workers, cpus = (1, "0") if name == "dp_w1_cpu0" else (int(name[-1]), None)
                out = work / f"out_{name}"
                result = dataprep_run(kept, out, workers, fresh=True, sample_tree=sampled, cpus=cpus)
            elif name in ("dp_shm_w1", "dp_shm_w2"):
                out = TMPFS / f"dataprep-speed-{name}"
                result = dataprep_run(kept, out, int(name[-1]), fresh=True, sample_tree=sampled)
                shutil.rmtree(out)  # memory, not disk
            elif name == "dp_ray_w2":
                result = dataprep_run(
                    kept, work / f"out_{name}", 2, fresh=True, executor="ray", sample_tree=sampled
                )
            elif name == "dp_rerun":
                if not (work / "out_dp_w2" / "manifest.json").exists():
                    dataprep_run(kept, work / "out_dp_w2", 2, fresh=True)
                result = dataprep_run(kept, work / "out_dp_w2", 2, fresh=False, sample_tree=sampled)
            elif name in ("dp_448_w1", "dp_448_w2"):
                out = work / f"out_{name}"
                result = dataprep_run(small, out, int(name[-1]), fresh=True, sample_tree=sampled)
            elif name in ("base_w2", "base_448_w2"):
                recipe = kept if name == "base_w2" else small
                out, tree = work / f"out_{name}", args.baseline_tree
                result = dataprep_run(recipe, out, 2, fresh=True, tree=tree, sample_tree=sampled)
            else:
                ray_only = [sys.executable, "-c", RAY_ONLY.format(workers=2)]
                result = run_measured(ray_only, RAY_ENV, sample_tree=sampled)
                result["samples"] = 0
            runs[name].append(result)
            emit({"kind": "run", "config": name, "rep": rep, **result})
    return summarize(runs, args.samples)


def summarize(runs: dict[str, list[dict[str, Any]]], samples: int) -> list[dict[str, Any]]:
    """Medians and samples/s per configuration, with ratios to the naive script and img2dataset."""
    rate = {name: samples / median_of(results, "wall_s") for name, results in runs.items()}
    summary = []
    for name, results in runs.items():
        row: dict[str, Any] = {"kind": "summary", "config": name, "reps": len(results)}
        row["wall_s"] = median_of(results, "wall_s")
        row["samples_written"] = results[0]["samples"]
        if name not in ("ray_only", "dp_rerun"):
            row["samples_per_s"] = round(rate[name])
        for base in (BASELINE, "i2d_copy", "i2d_448"):
            if base in rate and "samples_per_s" in row and name != base:
                row[f"vs_{base}"] = round(rate[name] / rate[base], 2)
        row["max_single_rss_mib"] = median_of(results, "max_single_rss_mib")
        if "tree_peak_pss_mib" in results[0]:
            row["tree_peak_pss_mib"] = median_of(results, "tree_peak_pss_mib")
        summary.append(row)
        emit(row)
    return summary


def memory(counts: list[int], work: Path) -> list[dict[str, Any]]:
    """Peak RSS of the driver and of the largest Ray worker for builds of `counts` records of tiny
    images (so that per-sample state, not image decoding, shows)."""
    from rerun_scale import write_tiny_dataset  # the driver-scale bench's tiny-image dataset

    rows = []
    for count in counts:
        data = work / f"memory-{count}"
        write_tiny_dataset(data, count, pool=64)
        recipe = dataprep_recipe(work / f"memory-{count}.yaml", data, 2000, 1024)
        out = work / f"memory-out-{count}"
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        result = run_measured([str(BIN / "dataprep"), "build", str(recipe), "--out", str(out), "--workers", "2", "--quiet"], RAY_ENV)  # fmt: skip
        row = {
            "kind": "memory",
            "records": count,
            "wall_s": round(time.perf_counter() - started, 2),
            **result,
        }
        emit(row)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_run_arguments(parser, samples=2000, reps=1)
    parser.add_argument("--i2d-venv", type=Path, default=Path("/tmp/speed-i2d"), help="img2dataset's venv")
    parser.add_argument(
        "--configs", type=lambda text: text.split(","), default=CONFIGS, help=",".join(CONFIGS)
    )
    parser.add_argument(
        "--memory", type=lambda text: [int(n) for n in text.split(",")], help="e.g. 10000,100000"
    )
    parser.add_argument("--baseline-tree", type=Path, help="another dataprep tree, for base_w2, base_448_w2")
    parser.add_argument(
        "--tree-memory",
        action="store_true",
        help="sample every run's process tree for its peak PSS (slows busy workers by a few %%)",
    )
    parser.add_argument("--child", choices=["io_limit", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        data = args.work
        count = convert(
            data / "train.jsonl", data / "images", args.out, args.shard_size, args.child == "naive"
        )
        (args.out / "count.json").write_text(json.dumps(count))
        return
    emit({"kind": "setup", "machine": machine(), "samples": args.samples, "reps": args.reps})
    with work_folder(args.work, "bench-speed-") as folder:
        if args.memory:
            rows = memory(args.memory, folder)
            print(
                table(
                    rows,
                    ["records", "wall_s", "driver_peak_rss_mib", "worker_peak_rss_mib", "tree_peak_pss_mib"],
                ),
                file=sys.stderr,
            )
            return
        summary = measure(args, folder)
    columns = [
        "config",
        "wall_s",
        "samples_per_s",
        "vs_naive",
        "vs_i2d_copy",
        "vs_i2d_448",
        "samples_written",
    ]
    print(table(summary, [*columns, "max_single_rss_mib", "tree_peak_pss_mib"]), file=sys.stderr)
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
