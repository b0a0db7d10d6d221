"""`TrainConfig`: every option of an SFT run with its default, help and least value, in one place
(the flags of `train-bridge sft` are generated from it). No torch here: `--help` stays fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from train_bridge.template import DEFAULT_SYSTEM, Overlong

Parallel = Literal["auto", "none", "ddp", "fsdp"]
Attention = Literal["auto", "cudnn", "flash", "efficient", "math"]


def flag(help: str, low: int | None = None) -> dict[str, Any]:
    """The metadata of a `TrainConfig` field: the help of its flag (argparse's `%(default)s` names the
    default) and, for an integer, its least value."""
    return {"help": help, "low": low}


@dataclass
class TrainConfig:
    """Everything a run needs; defaults are the InternVL-Chat-V1-2 hyper-parameters. A field without a
    default is a required flag; a bool that defaults to true also gets a `--no-` flag."""

    manifest: str = field(
        metadata=flag(
            "manifest.json of a dataprep build: a path, or a store URL (s3://bucket/prefix/manifest.json)"
        )
    )
    model: str = field(metadata=flag("local model folder, or preset: tiny | small | v1_2"))
    tokenizer: str = field(metadata=flag("local tokenizer folder or tokenizer.json"))
    out: Path = field(metadata=flag("metrics.jsonl and checkpoints/ go here"))
    system: str = field(default=DEFAULT_SYSTEM, metadata=flag("system message (default: %(default)r)"))
    max_length: int = field(default=2048, metadata=flag("tokens per sample (default: %(default)s)", low=1))
    overlong: Overlong = field(
        default="truncate",
        metadata=flag("too-long samples: truncate text after the last image, or drop (default: %(default)s)"),
    )
    image_size: int = field(
        default=448, metadata=flag("input size of preset models (default: %(default)s)", low=1)
    )
    global_batch: int = field(
        default=512,
        metadata=flag("samples per optimizer step, all ranks together (default: %(default)s)", low=1),
    )
    micro_batch: int = field(
        default=8, metadata=flag("samples per device per forward (default: %(default)s)", low=1)
    )
    lr: float = field(
        default=1e-5, metadata=flag("peak learning rate of AdamW, cosine to 0 (default: %(default)s)")
    )
    warmup_ratio: float = field(
        default=0.03, metadata=flag("linear warm-up, as a share of the steps (default: %(default)s)")
    )
    weight_decay: float = field(default=0.05, metadata=flag("AdamW weight decay (default: %(default)s)"))
    decay_1d: bool = field(
        default=True, metadata=flag("weight decay on biases and norm weights too, as V1-2 (default: on)")
    )
    grad_clip: float = field(
        default=1.0, metadata=flag("max gradient norm; 0: measured, not clipped (default: %(default)s)")
    )
    epochs: int = field(default=1, metadata=flag("passes over the data (default: %(default)s)", low=1))
    max_steps: int = field(
        default=0, metadata=flag("schedule length in steps (0: epochs × steps/epoch)", low=0)
    )
    stop_after: int = field(default=0, metadata=flag("checkpoint and stop after this many steps", low=0))
    seed: int | None = field(
        default=None, metadata=flag("data order and init seed (default: the manifest's)", low=0)
    )
    num_workers: int = field(
        default=4, metadata=flag("DataLoader workers per rank (default: %(default)s)", low=0)
    )
    window: int = field(default=16, metadata=flag("shards shuffled together (default: %(default)s)", low=1))
    length_group: int = field(
        default=400,
        metadata=flag(
            "sort runs of this many samples by length, longest first: HF's group_by_length megabatches "
            "(50 × V1-2's 8 per device); 0: off (default: %(default)s)",
            low=0,
        ),
    )
    pad_multiple: int = field(
        default=64,
        metadata=flag("pad each micro-batch's length up to a multiple of this (default: %(default)s)", low=1),
    )
    gradient_checkpointing: bool = field(
        default=True, metadata=flag("recompute activations in the backward (default: on)")
    )
    parallel: Parallel = field(default="auto", metadata=flag("auto: DDP when WORLD_SIZE > 1"))
    bf16: bool = field(default=True, metadata=flag("bf16 autocast on CUDA (default: on)"))
    compile: bool = field(default=False, metadata=flag("torch.compile each transformer layer"))
    attention: Attention = field(
        default="auto",
        metadata=flag("attention kernels (scaled_dot_product_attention backend; default: PyTorch's choice)"),
    )
    gpu_decode: bool = field(default=False, metadata=flag("decode JPEGs with nvJPEG (torchvision + CUDA)"))
    exact_decode: bool = field(
        default=False,
        metadata=flag("decode every JPEG pixel on the CPU (default: large JPEGs at reduced DCT scale)"),
    )
    save_every: int = field(
        default=0, metadata=flag("checkpoint every N steps (0: at the end only; -1: never)", low=-1)
    )
    resume: str = field(default="auto", metadata=flag("auto (latest under --out) | none | checkpoint folder"))
    peak_tflops: float = field(default=0.0, metadata=flag("for MFU (default: known GPUs' bf16 peak)"))
    profile: Path | None = field(
        default=None,
        metadata=flag(
            "capture steps 5-10 with torch.profiler into DIR/profile-rank<r>.txt (busy time, top ops)"
        ),
    )
