"""Loader throughput: train_bridge's ShardStream + Encoder against two baselines, on shards that
`dataprep build` made from 640×480 JPEG photos, in a torch DataLoader with 0 and `--workers` workers.

  shardstream  train_bridge.data.ShardStream/Encoder/make_loader (seeks samples in the shards,
               windowed shuffle, deterministic resumable batches)
  webdataset   wds.WebDataset(urls, shardshuffle=False).decode("pil"), in order (the baseline)
  loose        the official InternVL layout (`dataprep export internvl`: jsonl + image files),
               a map-style Dataset opening each file with PIL

Every pipeline does the same per-sample work: tokenize with train_bridge.template.encode (Hermes-2,
256 image tokens), RGB + bicubic resize to 448 + ImageNet normalize, micro-batches of `--batch`
collated with train_bridge.data.collate. Samples/s over one pass, median of interleaved repetitions,
ratios to webdataset at the same worker count. Memory: the sampled peak PSS of this process + workers.
This process runs torch with `--torch-threads` (1: the work of one DataLoader worker, and steadier on
a shared machine than 2 spinning intra-op threads).
"""

from __future__ import annotations

import argparse
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
from train_bridge.images import preprocess_pil
from train_bridge.model import add_special_tokens
from train_bridge.template import DEFAULT_SYSTEM, IM_END, SPECIAL_TOKENS

IMAGE_SIZE, IMAGE_TOKENS, MAX_LENGTH = 448, 256, 2048
PIPELINES = ["shardstream", "webdataset", "loose"]


def encode_item(encoder: Encoder, record: dict[str, Any], images: list[Image.Image]) -> dict[str, Any]:
    """What Encoder returns for one sample, from already decoded images."""
    return encoder.assemble(record, lambda: [preprocess_pil(image, encoder.image_size) for image in images])


class WdsEncode:
    """The webdataset map step (a class, so DataLoader workers can pickle it)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        record = sample["json"]
        return encode_item(self.encoder, record, [sample[suffix] for suffix in record["images"]])


class LooseFiles(Dataset):
    """The InternVL layout written by `dataprep export internvl`: one jsonl + image folder per source."""

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
        opened = [Image.open(root / name) for name in names]
        try:
            return encode_item(self.encoder, record, opened)
        finally:
            for image in opened:
                image.close()


def prepare(work: Path, samples: int, shard_size: int) -> tuple[Path, dict[str, Any], Encoder]:
    """Shards by dataprep (resumed if `work` already holds them), their InternVL export, an encoder."""
    data = work / "data"
    write_llava_dataset(data, samples)
    recipe_path = recipe(work / "recipe.yaml", data, shard_size, None)
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
    if name == "shardstream":
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
    return DataLoader(LooseFiles(meta, encoder), shuffle=False, **batching)


def one_pass(batches: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Samples/s over a full pass (worker start-up included), peak PSS of this process tree."""
    samples = 0
    with TreeMemory(os.getpid()) as memory:
        started = time.perf_counter()
        for batch in batches:
            samples += len(batch["input_ids"])
        seconds = time.perf_counter() - started
    return {
        "samples": samples,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 1),
        "tree_peak_pss_mib": round(memory.peak_pss_mib, 1),
    }


def measure(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    manifest, meta, encoder = prepare(work, args.samples, args.shard_size)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rep in range(args.reps):
        for workers in (0, args.workers):
            for name in PIPELINES:
                result = one_pass(loader(name, manifest, meta, encoder, args.batch, workers))
                runs.setdefault((name, workers), []).append(result)
                emit({"kind": "run", "pipeline": name, "workers": workers, "rep": rep, **result})
    summary = []
    for (name, workers), results in runs.items():
        base = median_of(runs[("webdataset", workers)], "samples_per_s")
        rate = median_of(results, "samples_per_s")
        row = {
            "kind": "summary",
            "pipeline": name,
            "workers": workers,
            "reps": len(results),
            "samples_per_s": rate,
            "vs_webdataset": round(rate / base, 2),
            "tree_peak_pss_mib": median_of(results, "tree_peak_pss_mib"),
        }
        summary.append(row)
        emit(row)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--samples", type=int, default=2000, help="samples in the shards (default: %(default)s)"
    )
    parser.add_argument(
        "--shard-size", type=int, default=250, help="samples per shard (default: %(default)s)"
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
    columns = ["pipeline", "workers", "samples_per_s", "vs_webdataset", "tree_peak_pss_mib"]
    print(table(summary, columns), file=sys.stderr)


if __name__ == "__main__":
    main()
