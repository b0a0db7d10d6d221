"""Readable text views: a manifest, two manifests compared, a sample, a plan, the fetched files, the
upstreams and the checklist of manual ones."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from dataprep.contract.manifest import Decontamination, DownloadReport, Manifest, SourceReport, TokenStats
from dataprep.contract.sample import ShardSample
from dataprep.mixture import Plan

if TYPE_CHECKING:
    from pathlib import Path

    from dataprep.engine.entry import Entry
    from dataprep.recipe.model import Recipe
    from dataprep.recipe.upstreams import Upstream


def table(headers: list[str], rows: list[list[str]], text_tail: int = 0) -> str:
    """A plain aligned text table: the first column and the last `text_tail` ones left-aligned
    (text), the others right-aligned (numbers)."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    left = {0, *range(len(headers) - text_tail, len(headers))}

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) if i in left else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

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
                f"{source.in_mixture:,}",
                f"{100 * source.share:.2f}%",
                reasons,
            ]
        )
    totals = manifest.totals
    rows.append(
        [
            "total",
            f"{totals.read:,}",
            f"{totals.kept:,}",
            f"{totals.rejected:,}",
            f"{totals.samples:,}",
            "100.00%" if totals.samples else "0.00%",
            "",
        ]
    )
    headers = ["source", "read", "kept", "rejected", "in mixture", "share", "rejected by reason"]
    trial = f", TRIAL: --limit {manifest.limit} records per source" if manifest.limit is not None else ""
    lines = [
        f"{manifest.name}  (seed {manifest.seed}, recipe {manifest.recipe_sha256[:12]}, "
        f"content {manifest.content_sha256[:12]}{trial})",
        "",
        table(headers, rows, text_tail=1),
        "",
        f"{totals.shards} shards, {totals.bytes / 1e6:,.1f} MB, {totals.samples:,} samples; "
        f"rejects in {manifest.rejects_file}",
        f"licence terms: {manifest.strictest_terms}",
    ]
    if any(source.expected is not None for source in manifest.sources):
        lines += ["", expectations(manifest)]
    if manifest.stats.tokens is not None:
        lines += ["", token_table(manifest.stats.tokens)]
    if warnings := mixture_warnings(manifest):
        lines += ["", f"warnings ({len(warnings)}):", *(f"  {warning}" for warning in warnings)]
    if manifest.decontamination is not None:
        lines += ["", decontamination_table(manifest.decontamination)]
    return "\n".join(lines)


REJECT_RATE_WARNING = 0.2
"""A source that rejects more than this share of the records it reads is named in the warnings."""


def mixture_warnings(manifest: Manifest) -> list[str]:
    """What a person should look at before training: a source that kept nothing, one whose count in
    the mixture is not its `expect`, one that rejected more than `REJECT_RATE_WARNING` of its records."""
    warnings = []
    for source in manifest.sources:
        rejected = sum(source.rejected.values())
        if source.kept == 0:
            warnings.append(f"{source.name}: kept 0 of {source.read:,} records read")
        if source.expected is not None and source.in_mixture != source.expected:
            warnings.append(
                f"{source.name}: {source.in_mixture:,} samples in the mixture, {source.expected:,} expected"
            )
        if source.read and source.kept and rejected / source.read > REJECT_RATE_WARNING:
            reason, count = min(source.rejected.items(), key=lambda item: (-item[1], item[0]))
            warnings.append(
                f"{source.name}: {rejected / source.read:.0%} of {source.read:,} records rejected "
                f"(most: {reason} {count:,})"
            )
    return warnings


def decontamination_table(found: Decontamination) -> str:
    """Overlaps per source × eval set (with a first example), then duplicates within the mixture."""
    items = ", ".join(f"{name} {count:,}" for name, count in found.eval_items.items())
    rows = [
        [
            report.source,
            f"{report.samples:,}",
            report.eval_set,
            f"{report.examples[0].sample} ~ {report.examples[0].eval_item} "
            f"({report.examples[0].kind} {report.examples[0].distance:g})",
        ]
        for report in found.overlaps
    ]
    rows += [
        [" & ".join(report.sources), f"{report.pairs:,}", report.kind, " ~ ".join(report.examples[0][:2])]
        for report in found.duplicates
    ]
    dropped = f", {found.dropped:,} samples dropped (eval_overlap)" if found.mode == "drop" else ""
    heading = f"decontamination ({found.mode}{dropped}); eval items: {items}"
    if not rows:
        return f"{heading}\nno overlaps, no duplicates"
    return f"{heading}\n" + table(
        ["source", "samples / pairs", "eval set / duplicates", "example"], rows, text_tail=2
    )


def token_table(tokens: TokenStats) -> str:
    """Tokens per sample by source: mean, min, max and total (the mixture's compute share)."""
    summaries = [*tokens.per_source.items(), ("total", tokens.per_sample)]
    rows = [
        [
            name,
            f"{summary['count']:,.0f}",
            *(  # a source with no sample in the mixture has no mean, shortest or longest sample
                [f"{summary['mean']:,.1f}", f"{summary['min']:,.0f}", f"{summary['max']:,.0f}"]
                if summary["count"]
                else ["-", "-", "-"]
            ),
            f"{summary['total']:,.0f}",
        ]
        for name, summary in summaries
    ]
    head = (
        f"tokens per sample (tokenizer {tokens.tokenizer_sha256[:12]}, {tokens.image_tokens} per image, "
        "template tokens not counted)"
    )
    return "\n".join([head, table(["source", "samples", "mean", "min", "max", "total"], rows)])


def expectations(manifest: Manifest) -> str:
    """Each source with an `expect`: the samples it contributed against that count."""
    parts = []
    for source in manifest.sources:
        if source.expected is None:
            continue
        gap = source.in_mixture - source.expected
        state = "as expected" if gap == 0 else f"{gap:+,} against {source.expected:,} expected"
        parts.append(f"  {source.name}: {source.in_mixture:,} {state}")
    mismatched = sum(s.expected is not None and s.in_mixture != s.expected for s in manifest.sources)
    head = "expected counts: all met" if not mismatched else f"expected counts: {mismatched} not met"
    return "\n".join([head, *parts])


def plan_rows(entries: list[Entry], shards: Plan) -> list[dict[str, Any]]:
    """Per source: input files and bytes, records read and kept, missing images, other rejects by
    reason, the recipe's `expect`, planned count."""
    planned = [sum(column) for column in zip(*shards.counts, strict=True)] or [0] * len(entries)
    rows = []
    for index, result in enumerate(entries):
        reasons = Counter(reject.reason for reject in result.rejects)
        rows.append(
            {
                "source": result.entry.label,
                "input_files": len(result.artifacts),
                "input_bytes": sum(artifact.bytes for artifact in result.artifacts),
                "read": result.read,
                "kept": len(result.kept),
                "images_missing": reasons.pop("image_missing", 0),
                "other_rejects": dict(sorted(reasons.items())),
                "expected": result.entry.expect,
                "will_produce": planned[index],
            }
        )
    return rows


def plan_table(rows: list[dict[str, Any]], shards: int) -> str:
    """`plan_rows` as a text table, with the mixture's total."""
    cells = [
        [
            row["source"],
            f"{row['input_files']} ({row['input_bytes'] / 1e6:,.1f} MB)",
            f"{row['read']:,}",
            f"{row['kept']:,}",
            f"{row['images_missing']:,}",
            ", ".join(f"{reason} {count}" for reason, count in row["other_rejects"].items()) or "-",
            "-" if row["expected"] is None else f"{row['expected']:,}",
            f"{row['will_produce']:,}",
        ]
        for row in rows
    ]
    headers = [
        "source",
        "input files",
        "read",
        "kept",
        "images missing",
        "other rejects",
        "expected",
        "will produce",
    ]
    total = sum(row["will_produce"] for row in rows)
    return table(headers, cells) + f"\n\n{total:,} samples in {shards} shards"


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


def upstream_rows(upstreams: list[Upstream], data_root: Path) -> list[dict[str, Any]]:
    """Per upstream the recipe names: its kind, public or manual, its size (stated, else the sum of
    its files' known sizes), its folder, present or not."""
    return [
        {
            "upstream": upstream.name,
            "kind": upstream.kind,
            "fetch": "public" if upstream.public else "manual",
            "size": upstream.size,
            "approx_bytes": upstream.approx_bytes(),
            "folder": str(upstream.root(data_root)),
            "on_disk": "missing" if upstream.missing(data_root) else "present",
        }
        for upstream in upstreams
    ]


def upstream_table(rows: list[dict[str, Any]]) -> str:
    """`upstream_rows` as a text table, with the public ones' stated total."""
    cells = [
        [
            row["upstream"],
            row["kind"],
            row["fetch"],
            row["size"] or _size_text(row["approx_bytes"]),
            row["folder"],
            row["on_disk"],
        ]
        for row in rows
    ]
    public = [row for row in rows if row["fetch"] == "public"]
    known = sum(row["approx_bytes"] or 0 for row in public)
    unknown = sum(row["approx_bytes"] is None for row in public)
    total = (
        f"\n{len(public)} public upstreams ({_size_text(known)} stated"
        + (f", {unknown} of unstated size" if unknown else "")
        + f"), {len(rows) - len(public)} manual"
    )
    return table(["upstream", "kind", "fetch", "size", "folder", "on disk"], cells, text_tail=5) + total


def _size_text(size: int | None) -> str:
    return "?" if size is None else f"~{size / 1e9:,.1f} GB" if size >= 1e9 else f"~{size / 1e6:,.1f} MB"


def manual_checklist(upstreams: list[Upstream], data_root: Path) -> tuple[str, int]:
    """The manual upstreams: present, or missing with the steps to take; and how many are missing."""
    lines, missing = [], 0
    for upstream in upstreams:
        if upstream.manual is None:
            continue
        absent = upstream.missing(data_root)
        if not absent:
            lines.append(f"[x] {upstream.name}: present in {upstream.root(data_root)}")
            continue
        missing += 1
        manual = upstream.manual
        lines.append(f"[ ] {upstream.name}: missing {', '.join(absent)} in {upstream.root(data_root)}")
        lines.append(f"    why: {manual.why}")
        lines.append(f"    page: {manual.page}")
        for file in manual.files:
            moved = "".join(f"; unpack {src}/ → {dst}/" for src, dst in file.members.items())
            lines.append(f"    file: {file.name}{moved}")
        lines.extend(f"    {line}" for line in manual.steps.strip().splitlines())
    if not lines:
        return "", 0
    head = f"manual upstreams: {missing} of {len([u for u in upstreams if u.manual])} missing"
    return "\n".join([head, *lines]), missing


def sample_view(key: str, sample: ShardSample, images: dict[str, bytes]) -> str:
    """One sample as a person reads it: origin, images (size, bytes), every turn, provenance."""
    lines = [f"{key}  source={sample.source}  id={sample.id}"]
    for suffix, (width, height) in zip(sample.images, sample.image_sizes, strict=True):
        lines.append(f"  image {suffix}: {width}×{height}, {len(images[suffix]):,} bytes")
    for turn in sample.conversations:
        text = turn.value.replace("\n", "\n         ")
        lines.append(f"  {turn.role:>5}: {text}")
    if sample.meta:
        lines.append(f"   meta: {json.dumps(sample.meta, ensure_ascii=False, sort_keys=True)}")
    return "\n".join(lines)


def manifest_diff(old: Manifest, new: Manifest) -> list[str]:
    """What differs between two builds' manifests, source by source; empty when their content
    hashes agree (the same shards, bytes for bytes)."""
    if old.content_sha256 == new.content_sha256:
        return []
    lines = []
    for field in (
        "format_version",
        "tool_version",
        "name",
        "seed",
        "recipe_sha256",
        "limit",
        "strictest_terms",
    ):
        if getattr(old, field) != getattr(new, field):
            lines.append(f"{field}: {getattr(old, field)} → {getattr(new, field)}")
    changed_keys = sorted(
        key for key in {*old.recipe, *new.recipe} if old.recipe.get(key) != new.recipe.get(key)
    )
    if changed_keys:
        lines.append(f"recipe keys changed: {', '.join(changed_keys)}")
    for key in changed_keys:
        old_value, new_value = old.recipe.get(key), new.recipe.get(key)
        if isinstance(old_value, dict) and isinstance(new_value, dict):
            fields = sorted(f for f in {*old_value, *new_value} if old_value.get(f) != new_value.get(f))
            lines += [f"{key}.{f}: {old_value.get(f)} → {new_value.get(f)}" for f in fields]
    before = {source.name: source for source in old.sources}
    after = {source.name: source for source in new.sources}
    for name in sorted(before.keys() - after.keys()):
        lines.append(f"source {name}: removed")
    for name in sorted(after.keys() - before.keys()):
        lines.append(f"source {name}: added")
    old_entries, new_entries = _recipe_entries(old), _recipe_entries(new)
    for name in [source.name for source in new.sources if source.name in before]:
        changes = _source_changes(before[name], after[name])
        changes += _entry_changes(old_entries.get(name, {}), new_entries.get(name, {}))
        lines += [f"source {name}: {change}" for change in changes]
    if old.stats.tokens != new.stats.tokens:
        lines.append(
            f"token statistics: {_tokens_label(old.stats.tokens)} → {_tokens_label(new.stats.tokens)}"
        )
    old_files, new_files = (
        {f.path: f.sha256 for f in old.reader_files},
        {f.path: f.sha256 for f in new.reader_files},
    )
    if changed_files := sorted(p for p in {*old_files, *new_files} if old_files.get(p) != new_files.get(p)):
        lines.append(f"reader files changed: {', '.join(changed_files)}")
    same = {(s.path, s.sha256) for s in old.shards} & {(s.path, s.sha256) for s in new.shards}
    lines.append(f"shards: {len(old.shards)} → {len(new.shards)}, {len(same)} identical")
    return lines


def _tokens_label(tokens: TokenStats | None) -> str:
    if tokens is None:
        return "none"
    total = tokens.per_sample["total"]
    return f"{total:,.0f} tokens (tokenizer {tokens.tokenizer_sha256[:12]}, {tokens.image_tokens} per image)"


def _recipe_entries(manifest: Manifest) -> dict[str, dict[str, Any]]:
    """The recorded recipe's source entries by name (the adapter's name when none is given)."""
    return {entry.get("name") or entry["source"]: entry for entry in manifest.recipe.get("sources", [])}


def _entry_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Recipe entry keys the source reports do not compare: `expect`, `path`, adapter options."""
    fields = sorted(f for f in {*old, *new} - {"name", "take", "repeat"} if old.get(f) != new.get(f))
    return [f"{field} {old.get(field)} → {new.get(field)}" for field in fields]


def _source_changes(old: SourceReport, new: SourceReport) -> list[str]:
    changes = [
        f"{field} {getattr(old, field)} → {getattr(new, field)}"
        for field in ("take", "repeat")
        if getattr(old, field) != getattr(new, field)
    ]
    changes += [
        f"{field} {getattr(old, field):,} → {getattr(new, field):,}"
        for field in ("read", "kept", "in_mixture")
        if getattr(old, field) != getattr(new, field)
    ]
    for reason in sorted({*old.rejected, *new.rejected}):
        if old.rejected.get(reason, 0) != new.rejected.get(reason, 0):
            changes.append(
                f"rejected {reason} {old.rejected.get(reason, 0):,} → {new.rejected.get(reason, 0):,}"
            )
    if old.adapter_version != new.adapter_version:
        changes.append(f"adapter v{old.adapter_version} → v{new.adapter_version}")
    files_before = {artifact.path: artifact.sha256 for artifact in old.artifacts}
    files_after = {artifact.path: artifact.sha256 for artifact in new.artifacts}
    for path in sorted(files_before.keys() | files_after.keys()):
        if files_before.get(path) != files_after.get(path):
            state = (
                "added" if path not in files_before else "removed" if path not in files_after else "changed"
            )
            changes.append(f"input {path} {state}")
    return changes
