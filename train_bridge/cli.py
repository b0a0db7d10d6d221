"""`train-bridge sft` and `train-bridge export-internvl`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from dataprep.contract.manifest import ManifestError
from train_bridge.errors import BridgeError
from train_bridge.template import DEFAULT_SYSTEM

DEFAULTS_NOTE = "defaults are the InternVL-Chat-V1-2 hyper-parameters"


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `low`."""

    def check(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    check.__name__ = "int"  # argparse names the type in its "invalid int value" message
    return check


_positive, _non_negative = _at_least(1), _at_least(0)


def _sft_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sft", help="supervised fine-tuning on the manifest's shards", description=DEFAULTS_NOTE
    )
    p.add_argument("--manifest", type=Path, required=True, help="manifest.json of a dataprep build")
    p.add_argument("--model", required=True, help="local model folder, or preset: tiny | small | v1_2")
    p.add_argument("--tokenizer", required=True, help="local tokenizer folder or tokenizer.json")
    p.add_argument("--out", type=Path, required=True, help="metrics.jsonl and checkpoints/ go here")
    p.add_argument("--system", default=DEFAULT_SYSTEM, help="system message (default: %(default)r)")
    p.add_argument("--max-length", type=_positive, default=2048)
    p.add_argument(
        "--overlong",
        choices=["truncate", "drop"],
        default="truncate",
        help="too-long samples: truncate text after the last image, or drop (default: %(default)s)",
    )
    p.add_argument(
        "--image-size", type=_positive, default=448, help="input size of preset models (default: 448)"
    )
    p.add_argument("--global-batch", type=_positive, default=512)
    p.add_argument("--micro-batch", type=_positive, default=8, help="samples per device per forward")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.03)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument(
        "--decay-1d",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="weight decay on biases and norm weights too, as V1-2 (default: on)",
    )
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: no clipping)")
    p.add_argument("--epochs", type=_positive, default=1)
    p.add_argument(
        "--max-steps",
        type=_non_negative,
        default=0,
        help="schedule length in steps (0: epochs × steps/epoch)",
    )
    p.add_argument(
        "--stop-after", type=_non_negative, default=0, help="checkpoint and stop after this many steps"
    )
    p.add_argument(
        "--seed", type=_non_negative, default=None, help="data order and init seed (default: the manifest's)"
    )
    p.add_argument("--num-workers", type=_non_negative, default=4, help="DataLoader workers per rank")
    p.add_argument(
        "--window", type=_positive, default=16, help="shards shuffled together (default: %(default)s)"
    )
    p.add_argument(
        "--length-group",
        type=_non_negative,
        default=400,
        help="sort runs of this many samples by length, longest first: HF's group_by_length megabatches "
        "(50 × V1-2's 8 per device); 0: off (default: %(default)s)",
    )
    p.add_argument(
        "--pad-multiple",
        type=_positive,
        default=64,
        help="pad each micro-batch's length up to a multiple of this (default: %(default)s)",
    )
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--parallel",
        choices=["auto", "none", "ddp", "fsdp"],
        default="auto",
        help="auto: DDP when WORLD_SIZE > 1",
    )
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 on CUDA")
    p.add_argument("--compile", action="store_true", help="torch.compile each transformer layer")
    p.add_argument(
        "--attention",
        choices=["auto", "cudnn", "flash", "efficient", "math"],
        default="auto",
        help="attention kernels (scaled_dot_product_attention backend; default: PyTorch's choice)",
    )
    p.add_argument("--gpu-decode", action="store_true", help="decode JPEGs with nvJPEG (torchvision + CUDA)")
    p.add_argument(
        "--save-every",
        type=_at_least(-1),
        default=0,
        help="checkpoint every N steps (0: at the end only; -1: never)",
    )
    p.add_argument("--resume", default="auto", help="auto (latest under --out) | none | checkpoint folder")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="capture steps 5-10 with torch.profiler into DIR/profile-rank<r>.txt (busy time, top ops)",
    )
    p.add_argument("--peak-tflops", type=float, default=0.0, help="for MFU (default: known GPUs' bf16 peak)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _sft_parser(sub)
    export = sub.add_parser("export-internvl", help="write the official InternVL meta/jsonl/images layout")
    export.add_argument("--manifest", type=Path, required=True)
    export.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (BridgeError, ManifestError) as error:
        print(f"train-bridge {args.command}: error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "export-internvl":
        from train_bridge.export_internvl import export

        print(json.dumps(export(args.manifest, args.out), indent=2))
        return 0
    from train_bridge.train import TrainConfig, train

    names = {f.name for f in fields(TrainConfig)}
    records = train(TrainConfig(**{k: v for k, v in vars(args).items() if k in names}))
    if records and os.environ.get("RANK", "0") == "0":
        print(json.dumps(records[-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
