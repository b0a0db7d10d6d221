"""Loader throughput: train_bridge's ShardStream + Encoder against an InternVL-style loader, on
shards that `dataprep build` made (originals kept) from JPEG photos of each `--sizes` (default: the
SAM-like 1,500×2,250 and small 640×480), in a torch DataLoader with 0 and `--workers` workers.

  internvl     the baseline: the official InternVL layout (`dataprep export internvl`: jsonl + loose
               image files), a map-style Dataset as InternVL's `internvl_chat` LazySupervisedDataset:
               `Image.open(...).convert("RGB")` (its `pil_loader`, full decode), then the ops of its
               `build_transform` (Resize((448, 448), BICUBIC) on the PIL image, ToTensor, Normalize
               with ImageNet mean/std; torchvision's steps written out, torchvision not being installed
               here; the training-only random JPEG re-compression left out, as in the bridge)
  shardstream  train_bridge.data.ShardStream/Encoder/make_loader (seeks samples in the shards,
               windowed shuffle, deterministic resumable batches; large JPEGs at reduced DCT scale)
  exact        the same with `exact_decode` (every JPEG pixel decoded: the bridge without the draft)
  webdataset   wds.WebDataset(urls, shardshuffle=False).decode("pil"), in order, the bridge's transform

Every pipeline tokenizes with train_bridge.template.encode (Hermes-2, 256 image tokens) and collates
micro-batches of `--batch` with train_bridge.data.collate. Samples/s over one pass, median of
interleaved repetitions, ratios to internvl at the same size and worker count; per worker: samples/s
divided by max(workers, 1). Memory: the sampled peak PSS of this process + workers. This process runs
torch with `--torch-threads` (1: the work of one DataLoader worker, and steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from benchlib import (
    BIN,
    RAY_ENV,
    TreeMemory,
    emit,
    machine,
    median_of,
    recipe,
    table,
    work_folder,
    write_llava_dataset,
)
from gpu_sft_prep import sentence
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dataprep.contract.manifest import load_manifest
from dataprep.export.internvl import InternVLLayout
from dataprep.export.run import open_build, run_export
from dataprep.fixtures.tokenizer import write_chat_tokenizer
from train_bridge.data import Encoder, ShardStream, collate, make_loader
from train_bridge.images import IMAGENET_MEAN, IMAGENET_STD, normalize, preprocess_pil
from train_bridge.model import add_special_tokens
from train_bridge.template import DEFAULT_SYSTEM, IM_END, SPECIAL_TOKENS

IMAGE_SIZE, IMAGE_TOKENS, MAX_LENGTH = 448, 256, 2048
PIPELINES = ["internvl", "shardstream", "exact", "webdataset"]
MEAN, STD = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)


def encode_item(encoder: Encoder, record: dict[str, Any], images: list[Image.Image]) -> dict[str, Any]:
    """What Encoder returns for one sample, from opened images."""
    return encoder.assemble(record, lambda: [preprocess_pil(image, encoder.image_size) for image in images])


def internvl_transform(image: Image.Image, size: int) -> torch.Tensor:
    """InternVL's `build_transform` (no pad2square, ImageNet), as torchvision runs it on a PIL image:
    Resize → `image.resize((size, size), BICUBIC)`; ToTensor → uint8 HWC copy, CHW, float / 255;
    Normalize → clone, sub_(mean), div_(std)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    resized = rgb.resize((size, size), Image.Resampling.BICUBIC)
    tensor = torch.from_numpy(np.array(resized, np.uint8, copy=True))
    tensor = tensor.view(size, size, 3).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    return tensor.clone().sub_(MEAN).div_(STD)


class WdsEncode:
    """The webdataset map step (a class, so DataLoader workers can pickle it)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        record = sample["json"]
        return encode_item(self.encoder, record, [sample[suffix] for suffix in record["images"]])


class InternVLFiles(Dataset):
    """The InternVL layout written by `dataprep export internvl` (one jsonl + image folder per source),
    read as InternVL's dataset does: `pil_loader` (open + convert RGB), then `build_transform`."""

    def __init__(self, meta: dict[str, dict[str, Any]], encoder: Encoder) -> None:
        self.encoder = encoder
        self.items = [
            (Path(entry["root"]), json.loads(line))
            for entry in meta.values()
            for line in Path(entry["annotation"]).read_text().splitlines()
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        root, record = self.items[index]
        names = record["image"] if isinstance(record["image"], list) else [record["image"]]
        size = self.encoder.image_size

        def pixels() -> list[torch.Tensor]:
            out = []
            for name in names:
                with Image.open(root / name) as image:
                    out.append(internvl_transform(image.convert("RGB"), size))
            return out

        return self.encoder.assemble(record, pixels)


def prepare(
    work: Path, samples: int, shard_size: int, width: int, height: int
) -> tuple[Path, dict[str, Any], Encoder]:
    """Shards by dataprep (resumed if `work` already holds them), their InternVL export, an encoder."""
    data = work / "data"
    write_llava_dataset(data, samples, width=width, height=height)
    recipe_path = recipe(work / "recipe.yaml", data, shard_size, None, max_side=max(width, height))
    manifest = work / "out" / "manifest.json"
    command = [str(BIN / "dataprep"), "build", str(recipe_path), "--out", str(manifest.parent), "--quiet"]
    subprocess.run(command, check=True, env={**os.environ, **RAY_ENV}, stdout=subprocess.DEVNULL)
    build, lengths = open_build(manifest)
    folder = (work / "internvl").absolute()
    meta = run_export(InternVLLayout.for_build(build, base=str(folder)), build, manifest, folder, lengths)[
        "meta"
    ]
    rng = random.Random(0)
    tokenizer = write_chat_tokenizer(
        work / "tokenizer", (sentence(rng, 5, 30) for _ in range(3000)), SPECIAL_TOKENS, IM_END
    )
    add_special_tokens(tokenizer)
    return manifest, meta, Encoder(tokenizer, IMAGE_SIZE, IMAGE_TOKENS, MAX_LENGTH, DEFAULT_SYSTEM)


def loader(
    name: str, manifest: Path, meta: dict[str, Any], encoder: Encoder, batch: int, workers: int
) -> Iterable[dict[str, Any]]:
    pad_id = encoder.tokenizer.pad_token_id
    if name in ("shardstream", "exact"):
        encoder = dataclasses.replace(encoder, exact_decode=name == "exact")
        return make_loader(ShardStream(manifest, encoder, batch_size=batch, pad_id=pad_id), workers)
    batching = {
        "batch_size": batch,
        "num_workers": workers,
        "collate_fn": functools.partial(collate, pad_id=pad_id, gpu_decode=False),
        "prefetch_factor": 4 if workers else None,
    }
    if name == "webdataset":
        urls = [str(path) for path in load_manifest(manifest).shard_paths(manifest)]
        dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil")
        return DataLoader(dataset.map(WdsEncode(encoder)), **batching)
    return DataLoader(InternVLFiles(meta, encoder), shuffle=False, **batching)


def one_pass(batches: Iterable[dict[str, Any]], uint8: bool) -> dict[str, Any]:
    """Samples/s over a full pass (worker start-up included), peak PSS of this process tree; `uint8`
    pixels are normalized here, as the trainer does on its device (here the CPU: the model's input)."""
    samples = 0
    with TreeMemory(os.getpid()) as memory:
        started = time.perf_counter()
        for batch in batches:
            if uint8 and len(batch["images"]):
                normalize(batch["images"])
            samples += len(batch["input_ids"])
        seconds = time.perf_counter() - started
    return {
        "samples": samples,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 1),
        "tree_peak_pss_mib": round(memory.peak_pss_mib, 1),
    }


def measure(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    pipelines = args.pipelines.split(",")
    unknown = sorted(set(pipelines) - set(PIPELINES))
    if unknown or "internvl" not in pipelines:
        raise SystemExit(
            f"--pipelines: {unknown or 'internvl (the baseline) is missing'}; known: {PIPELINES}"
        )
    sizes = [tuple(int(side) for side in size.split("x")) for size in args.sizes.split(",")]
    setups = {
        f"{width}x{height}": prepare(work / f"{width}x{height}", args.samples, args.shard_size, width, height)
        for width, height in sizes
    }
    runs: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for rep in range(args.reps):
        for size, (manifest, meta, encoder) in setups.items():
            for workers in (0, args.workers):
                for name in pipelines:
                    result = one_pass(
                        loader(name, manifest, meta, encoder, args.batch, workers), name != "internvl"
                    )
                    runs.setdefault((size, workers, name), []).append(result)
                    emit(
                        {
                            "kind": "run",
                            "size": size,
                            "pipeline": name,
                            "workers": workers,
                            "rep": rep,
                            **result,
                        }
                    )
    summary = []
    for (size, workers, name), results in runs.items():
        base = median_of(runs[(size, workers, "internvl")], "samples_per_s")
        rate = median_of(results, "samples_per_s")
        row = {
            "kind": "summary",
            "size": size,
            "workers": workers,
            "pipeline": name,
            "reps": len(results),
            "samples_per_s": rate,
            "per_worker": round(rate / max(workers, 1), 1),
            "vs_internvl": round(rate / base, 2),
            "tree_peak_pss_mib": median_of(results, "tree_peak_pss_mib"),
        }
        summary.append(row)
        emit(row)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--samples", type=int, default=400, help="samples in the shards, per size (default: %(default)s)"
    )
    parser.add_argument(
        "--sizes", default="1500x2250,640x480", help="photo sizes, WxH,… (default: %(default)s)"
    )
    parser.add_argument(
        "--pipelines", default="internvl,shardstream,exact", help=f"of {PIPELINES} (default: %(default)s)"
    )
    parser.add_argument(
        "--shard-size", type=int, default=100, help="samples per shard (default: %(default)s)"
    )
    parser.add_argument("--batch", type=int, default=16, help="micro-batch size (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="the >0 worker count (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions (default: %(default)s)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads of this process; workers always use 1 (default: %(default)s)",
    )
    parser.add_argument("--work", type=Path, help="keep data, shards and export here (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    emit({"kind": "setup", "machine": machine(), **{k: str(v) for k, v in vars(args).items()}})
    with work_folder(args.work, "bench-loader-") as folder:
        summary = measure(args, folder)
    columns = [
        "size",
        "workers",
        "pipeline",
        "samples_per_s",
        "per_worker",
        "vs_internvl",
        "tree_peak_pss_mib",
    ]
    print(table(summary, columns), file=sys.stderr)


if __name__ == "__main__":
    main()
