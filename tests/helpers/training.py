"""Helpers of the training tests: a micro-batch, a small CPU run's config and metrics, `sft` under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from train_bridge.config import TrainConfig
from train_bridge.data import Encoder, ShardStream, make_loader
from train_bridge.images import normalize

TORCHRUN = Path(sys.executable).with_name("torchrun")


def config(manifest: Path, tokenizer_dir: Path, out: Path, **overrides) -> TrainConfig:
    """The `tiny` preset at 28 px, 4 samples per step in micro-batches of 2, on one worker, afresh."""
    base = {
        "manifest": manifest,
        "model": "tiny",
        "tokenizer": str(tokenizer_dir),
        "out": out,
        "image_size": 28,
        "global_batch": 4,
        "micro_batch": 2,
        "lr": 1e-3,
        "num_workers": 1,
        "gradient_checkpointing": False,
        "resume": "none",
    }
    return TrainConfig(**{**base, **overrides})


def first_batch(manifest_path: Path, tokenizer) -> dict:
    """A micro-batch of 4 samples with one token per image, its images normalized (the model's input)."""
    encoder = Encoder(tokenizer, image_size=28, num_image_tokens=1, max_length=512, system="s")
    dataset = ShardStream(manifest_path, encoder, batch_size=4, pad_id=tokenizer.pad_token_id)
    batch = next(iter(make_loader(dataset, num_workers=0)))
    return {**batch, "images": normalize(batch["images"])}


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def sft_args(manifest: Path, tokenizer_dir: Path, out: Path, *extra: str) -> list[str]:
    """`train-bridge sft` flags of a 3-step run with one sample per micro-batch."""
    return [
        *("--manifest", str(manifest), "--model", "tiny", "--tokenizer", str(tokenizer_dir)),
        *("--out", str(out), "--image-size", "28", "--global-batch", "4", "--micro-batch", "1"),
        *("--lr", "1e-3", "--max-steps", "3", "--num-workers", "1", "--no-gradient-checkpointing"),
        *extra,
    ]


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`train-bridge sft` in two processes (gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "train_bridge.cli", "sft", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
