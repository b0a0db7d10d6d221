"""`dataprep export internvl|llava|llamafactory|swift|parquet MANIFEST --out DIR`: the command lines and
what they run; the summary is printed as JSON (and kept in `DIR/export.json`). An export that cannot
be made ends in one line: exit 2 for a refused argument (`--out`, `--tokenizer`, the manifest), 1 for
a build whose files do not read as its manifest says."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from dataprep.contract.cli import at_least
from dataprep.contract.manifest import Manifest, ManifestError
from dataprep.contract.store import LocationError, location
from dataprep.export.folder import ExportError
from dataprep.export.internvl import TRAINERS, InternVLLayout
from dataprep.export.llamafactory import LlamaFactoryLayout
from dataprep.export.llava import LlavaLayout
from dataprep.export.run import Layout, open_build, run_export
from dataprep.export.samples import UnreadableBuild
from dataprep.export.swift import SwiftLayout

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


def run_export_command(args: argparse.Namespace) -> int:
    """Run `dataprep export <layout>`; one line and exit 1 for a build unlike its manifest, 2 for
    another export that cannot be made."""
    try:
        manifest_path = location(args.manifest)
        if args.export_command == "internvl":
            manifest, lengths = open_build(manifest_path, args.tokenizer, args.image_tokens)
        else:
            manifest, lengths = open_build(manifest_path, lengths=False)
        layouts: dict[str, Callable[[], Layout]] = {
            "internvl": lambda: InternVLLayout.for_build(manifest, args.trainer, args.base),
            "llava": LlavaLayout,
            "llamafactory": lambda: LlamaFactoryLayout(manifest.name),
            "swift": lambda: SwiftLayout(args.base),
            "parquet": lambda: _parquet_layout(manifest),
        }
        summary = run_export(layouts[args.export_command](), manifest, manifest_path, args.out, lengths)
    except (ExportError, ManifestError, LocationError) as error:
        print(f"dataprep export {args.export_command}: error: {error}", file=sys.stderr)
        return 1 if isinstance(error, UnreadableBuild) else 2
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def _parquet_layout(manifest: Manifest) -> Layout:
    """The Parquet layout, imported when asked for (pyarrow stays out of `dataprep --help`)."""
    from dataprep.export.parquet import ParquetLayout

    return ParquetLayout(manifest)
