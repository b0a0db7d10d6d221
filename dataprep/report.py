"""Readable text views of a manifest, a plan and the fetched files."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from dataprep.manifest import DownloadReport, Manifest
from dataprep.mixture import Slot

if TYPE_CHECKING:
    from dataprep.engine import EntryResult
    from dataprep.recipe import Recipe


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def summary(manifest: Manifest) -> str:
    """Per source: read, kept, rejected by reason, in mixture, share; then totals and shards."""
    rows = []
    for source in manifest.sources:
        reasons = ", ".join(f"{reason} {count}" for reason, count in source.rejected.items()) or "-"
        rows.append(
            [
                source.name,
                f"{source.read:,}",
                f"{source.kept:,}",
                f"{sum(source.rejected.values()):,}",
                reasons,
                f"{source.in_mixture:,}",
                f"{100 * source.share:.2f}%",
            ]
        )
    totals = manifest.totals
    rows.append(
        [
            "total",
            f"{totals.read:,}",
            f"{totals.kept:,}",
            f"{totals.rejected:,}",
            "",
            f"{totals.samples:,}",
            "100.00%" if totals.samples else "0.00%",
        ]
    )
    headers = ["source", "read", "kept", "rejected", "reasons", "in mixture", "share"]
    lines = [
        f"{manifest.name}  (seed {manifest.seed}, recipe {manifest.recipe_sha256[:12]}, "
        f"content {manifest.content_sha256[:12]})",
        "",
        table(headers, rows),
        "",
        f"{totals.shards} shards, {totals.bytes / 1e6:,.1f} MB, {totals.samples:,} samples; "
        f"rejects in {manifest.rejects_file}",
        f"licence terms: {manifest.strictest_terms}",
    ]
    return "\n".join(lines)


def plan_table(entries: list[EntryResult], shards: list[list[Slot]]) -> str:
    """Per source: inputs found, records read and kept, missing images, other rejects, planned count."""
    planned = Counter(slot.component for shard in shards for slot in shard)
    rows = []
    for index, result in enumerate(entries):
        reasons = Counter(reject["reason"] for reject in result.rejects)
        missing_images = reasons.pop("image_missing", 0)
        input_bytes = sum(artifact.bytes for artifact in result.artifacts)
        rows.append(
            [
                result.entry.label,
                f"{len(result.artifacts)} ({input_bytes / 1e6:,.1f} MB)",
                f"{result.read:,}",
                f"{len(result.kept):,}",
                f"{missing_images:,}",
                ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items())) or "-",
                f"{planned[index]:,}",
            ]
        )
    headers = ["source", "input files", "read", "kept", "images missing", "other rejects", "will produce"]
    total = sum(planned.values())
    return table(headers, rows) + f"\n\n{total:,} samples in {len(shards)} shards"


def download_table(recipe: Recipe, downloads: list[list[DownloadReport]]) -> str:
    """Per fetched file: its source, where it is, size, sha256 and whether the recipe pinned it."""
    rows = [
        [
            entry.label,
            str(recipe.source_root(entry) / report.path),
            f"{report.bytes / 1e6:,.1f} MB",
            report.sha256[:16],
            "pinned" if report.pinned else "unpinned: add `sha256` to pin",
            f"{report.unpacked_files:,}" if report.unpacked_files else "-",
        ]
        for entry, reports in zip(recipe.sources, downloads, strict=True)
        for report in reports
    ]
    if not rows:
        return "the recipe has no `fetch` downloads"
    return table(["source", "file", "size", "sha256", "checksum", "unpacked files"], rows)
