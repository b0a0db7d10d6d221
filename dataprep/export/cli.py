"""`dataprep export internvl|llava|llamafactory|swift|parquet MANIFEST --out DIR`: the command lines
(what they run is `export/command.py`, imported only when an export runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dataprep.contract.cli import at_least
from dataprep.export.trainers import TRAINERS

BASE_HELP = (
    "prefix of the paths written (how the trainer, from its working directory, reaches DIR); "
    "default: relative to DIR"
)


def add_export_parsers(exports: argparse._SubParsersAction) -> None:
    """One subcommand per trainer, under `dataprep export`."""
    internvl = _export_parser(
        exports, "internvl", "InternVL's meta.json + one jsonl per source (with `length`) + images"
    )
    internvl.add_argument(
        "--trainer",
        choices=TRAINERS,
        default="current",
        help="v1_2: leave out multi-image samples (the V1-2 release reads one image per line), counted",
    )
    internvl.add_argument("--base", default="", help=BASE_HELP)
    internvl.add_argument(
        "--tokenizer",
        type=Path,
        help="tokenizer.json (or its folder) for each line's `length`; default: the build's token "
        "counts, if it has them (a tokenizer with the build's sha256 uses them too)",
    )
    internvl.add_argument(
        "--image-tokens",
        type=at_least(0),
        help="tokens per image in `length` (default: the build's, else 256)",
    )
    _export_parser(exports, "llava", "LLaVA's train.py: one JSON array + one image folder")
    _export_parser(exports, "llamafactory", "LLaMA-Factory: sharegpt jsonl + dataset_info.json + images")
    _export_parser(exports, "swift", "ms-swift: messages + images jsonl").add_argument(
        "--base", default="", help=BASE_HELP
    )
    _export_parser(
        exports, "parquet", "Hub-ready Parquet files (images as image features) + the dataset card"
    )


def _export_parser(exports: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = exports.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("manifest", help="manifest.json of a build: a path, or a store URL (s3://…)")
    parser.add_argument(
        "--out", type=Path, required=True, help="export folder (new, empty, or an earlier export)"
    )
    return parser
