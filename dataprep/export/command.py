"""What `dataprep export <layout>` runs; the summary is printed as JSON (and kept in `DIR/export.json`).
An export that cannot be made ends in one line: exit 2 for a refused argument (`--out`, `--tokenizer`,
the manifest), 1 for a build whose files do not read as its manifest says."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from dataprep.contract.manifest import Manifest, ManifestError
from dataprep.contract.store import LocationError, location
from dataprep.export.folder import ExportError
from dataprep.export.internvl import InternVLLayout
from dataprep.export.llamafactory import LlamaFactoryLayout
from dataprep.export.llava import LlavaLayout
from dataprep.export.run import Layout, open_build, run_export
from dataprep.export.samples import UnreadableBuild
from dataprep.export.swift import SwiftLayout


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
