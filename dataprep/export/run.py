"""One export: the build's samples, in shard order, handed to a layout, which keeps or leaves out
each one (counted by reason and source), in a folder only exports own; the summary printed and kept
in `export.json`. An export stopped half-way leaves no partial file."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import IO, Any, Protocol

from dataprep.contract.manifest import Manifest, load_manifest
from dataprep.contract.store import Location
from dataprep.export.folder import ExportFolder
from dataprep.export.samples import ExportSample, Lengths, check_shards, read_mixture, write_images


class Layout(Protocol):
    """An export's layout: the top-level names it writes, and its files, sample by sample (files
    it opens in the folder are put in place by the folder)."""

    name: str
    owns: tuple[str, ...]

    def start(self, folder: ExportFolder) -> None:
        """Begin writing into `folder`."""
        ...

    def left_out(self, exported: ExportSample) -> str | None:
        """Why the trainer cannot read this sample (the summary's reason), or None."""
        ...

    def add(self, exported: ExportSample) -> None:
        """Write one kept sample."""
        ...

    def finish(self) -> dict[str, Any]:
        """Write what remains; what the summary says of the layout."""
        ...


def run_export(
    layout: Layout, manifest: Manifest, manifest_path: Location, out: Path, lengths: Lengths
) -> dict[str, Any]:
    """Export every sample of the build into `out` through `layout`; return the summary (also in
    `out/export.json`)."""
    paths = check_shards(manifest, manifest_path)  # before anything is written
    folder = ExportFolder(out, layout.owns)
    kept = 0
    left_out: dict[str, Counter[str]] = defaultdict(Counter)
    try:
        layout.start(folder)
        for exported in read_mixture(manifest, paths, lengths):
            reason = layout.left_out(exported)
            if reason:
                left_out[reason][exported.sample.source] += 1
                continue
            layout.add(exported)
            kept += 1
        details = layout.finish()
    except BaseException:
        folder.abandon()
        raise
    summary = {
        "layout": layout.name,
        "manifest": str(manifest_path),
        "content_sha256": manifest.content_sha256,
        "samples": kept,
        "left_out": {reason: dict(sorted(counts.items())) for reason, counts in sorted(left_out.items())},
        **({"lengths": lengths.describe()} if lengths.known else {}),
        **details,
    }
    folder.finish(summary)
    return summary


def open_build(
    manifest_path: Location,
    tokenizer: Path | None = None,
    image_tokens: int | None = None,
    lengths: bool = True,
) -> tuple[Manifest, Lengths]:
    """The build's manifest and how its samples' token lengths are known (not at all without
    `lengths`: for layouts that write none)."""
    manifest = load_manifest(manifest_path)
    return manifest, Lengths(manifest, manifest_path, tokenizer, image_tokens, from_build=lengths)


class OneFileLayout:
    """A layout of one annotation file beside `images/`: JSON lines, or one JSON array (`array`).
    Subclasses name the file and make each sample's record."""

    name: str
    file: str
    array = False

    def __init__(self) -> None:
        self._folder: ExportFolder | None = None
        self._handle: IO[str] | None = None
        self._records = 0

    @property
    def owns(self) -> tuple[str, ...]:
        return (self.file, "images")

    def start(self, folder: ExportFolder) -> None:
        self._folder = folder
        self._handle = folder.open(self.file)
        if self.array:
            self._handle.write("[")

    def left_out(self, exported: ExportSample) -> str | None:
        return None

    def record(self, exported: ExportSample, images: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def add(self, exported: ExportSample) -> None:
        assert self._folder is not None and self._handle is not None
        text = json.dumps(self.record(exported, write_images(self._folder, exported)), ensure_ascii=False)
        if self.array:
            self._handle.write(("," if self._records else "") + "\n" + text)
        else:
            self._handle.write(text + "\n")
        self._records += 1

    def finish(self) -> dict[str, Any]:
        assert self._handle is not None
        if self.array:
            self._handle.write("\n]\n")
        return {"file": self.file, "records": self._records}
