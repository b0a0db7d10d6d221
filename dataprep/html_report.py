"""`dataprep report`: one self-contained HTML page of a build (or of two, compared).

Everything comes from the manifest, `rejects.jsonl` and one streaming pass over the shards' sample
json members, found through the sidecar indexes (images are not read, but for the few samples of
each source's grid, chosen by the smallest sha256 of their keys: deterministic, spread over the whole
build). The page embeds its thumbnails and styles: it needs no network to open.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from PIL import Image

from dataprep.contract.manifest import Manifest, load_manifest
from dataprep.contract.sample import ShardSample, parse_sample
from dataprep.contract.shards import MemberLocation, MemberReader, group_samples, member_locations, read_at
from dataprep.contract.store import Location
from dataprep.contract.token_counts import read_token_sidecar
from dataprep.report import manifest_diff

THUMBNAIL = 160  # longest side of a grid image, in pixels
EXAMPLES = 3  # examples shown per reject reason
TOP_REASONS = 12  # reject reasons listed (the most frequent)
TEMPLATE = "report.html.j2"


@dataclass
class Histogram:
    """Counts of a value in power-of-two bins ([0], [1], [2, 3], [4, 7], …), or in fixed edges."""

    edges: tuple[float, ...] | None = None
    counts: Counter[int] = field(default_factory=Counter)

    def add(self, value: float) -> None:
        if self.edges is None:
            self.counts[0 if value < 1 else int(math.log2(value)) + 1] += 1
        else:
            self.counts[sum(value >= edge for edge in self.edges)] += 1

    def bars(self) -> list[tuple[str, int, float]]:
        """(label, count, share of the largest bin) per bin from the first to the last non-empty one."""
        if not self.counts:
            return []
        top = max(self.counts.values())
        low, high = min(self.counts), max(self.counts)
        return [
            (self._label(bin_), self.counts[bin_], self.counts[bin_] / top) for bin_ in range(low, high + 1)
        ]

    def _label(self, bin_: int) -> str:
        if self.edges is None:
            return "0" if bin_ == 0 else f"{2 ** (bin_ - 1)}–{2**bin_ - 1}" if bin_ > 1 else "1"
        low = self.edges[bin_ - 1] if bin_ > 0 else None
        high = self.edges[bin_] if bin_ < len(self.edges) else None
        if low is None:
            return f"< {high:g}"
        return f"≥ {low:g}" if high is None else f"{low:g}–{high:g}"


ASPECT_EDGES = (0.25, 0.5, 0.75, 0.9, 1.1, 1.34, 2.0, 4.0)


@dataclass
class SourceStats:
    """Distributions of one source's samples in the mixture."""

    samples: int = 0
    turns: Histogram = field(default_factory=Histogram)
    text_chars: Histogram = field(default_factory=Histogram)
    images: Histogram = field(default_factory=Histogram)
    longest_side: Histogram = field(default_factory=Histogram)
    aspect: Histogram = field(default_factory=lambda: Histogram(ASPECT_EDGES))
    tokens: Histogram = field(default_factory=Histogram)
    picks: list[tuple[bytes, str, Path, dict[str, MemberLocation]]] = field(default_factory=list)

    def add(self, sample: ShardSample, tokens: int | None) -> None:
        """Count one sample (and its tokens, when the build counted them)."""
        self.samples += 1
        if tokens is not None:
            self.tokens.add(tokens)
        self.turns.add(len(sample.conversations))
        self.text_chars.add(sum(len(turn.value) for turn in sample.conversations))
        self.images.add(len(sample.images))
        for width, height in sample.image_sizes:
            self.longest_side.add(max(width, height))
            self.aspect.add(width / height if height else 0)

    def offer(self, key: str, shard: Path, members: dict[str, MemberLocation], grid: int) -> None:
        """Keep the sample for the grid if its key's hash is among the `grid` smallest so far."""
        rank = hashlib.sha256(f"{shard.name}/{key}".encode()).digest()
        item = (bytes(255 - byte for byte in rank), key, shard, members)  # a max-heap of ranks
        if len(self.picks) < grid:
            heapq.heappush(self.picks, item)
        elif item[0] > self.picks[0][0]:
            heapq.heapreplace(self.picks, item)

    def grid(self) -> list[tuple[Path, dict[str, MemberLocation]]]:
        """The kept grid samples' shards and members, by rank."""
        return [(shard, members) for _, _, shard, members in sorted(self.picks, reverse=True)]

    def histograms(self) -> dict[str, list[tuple[str, int, float]]]:
        return {
            "turns per sample": self.turns.bars(),
            "text characters per sample": self.text_chars.bars(),
            "images per sample": self.images.bars(),
            "longest image side (px)": self.longest_side.bars(),
            "aspect ratio (width / height)": self.aspect.bars(),
            **({"tokens per sample": self.tokens.bars()} if self.tokens.counts else {}),
        }


@dataclass(frozen=True)
class GridSample:
    key: str
    id: str
    turns: list[tuple[str, str]]
    thumbnails: list[str]  # data: URIs
    meta: str


@dataclass(frozen=True)
class RejectReason:
    source: str
    reason: str
    count: int
    examples: list[tuple[str, str]]  # (id, detail)


def _json_members(shard: Location) -> Iterator[tuple[str, MemberLocation, dict[str, MemberLocation]]]:
    """(key, its json's location, every member's location) per sample of a shard, in order."""
    for key, members in group_samples((location.name, location) for location in member_locations(shard)):
        if "json" not in members:
            raise ValueError(f"{shard}: sample {key} has no json member")
        yield key, members["json"], members


def collect_samples(manifest: Manifest, manifest_path: Location, grid: int) -> dict[str, SourceStats]:
    """Per source: its distributions and its grid's samples, in one pass over the json members."""
    stats: dict[str, SourceStats] = defaultdict(SourceStats)
    for report, shard in zip(manifest.shards, manifest.shard_paths(manifest_path), strict=True):
        tokens = read_token_sidecar(manifest_path.parent / report.tokens).tokens if report.tokens else {}
        with MemberReader() as reader:  # the shard opened once, its json members read one by one
            for key, location, members in _json_members(shard):
                sample = parse_sample(json.loads(reader.read(shard, location)))
                stats[sample.source].add(sample, tokens.get(key))
                stats[sample.source].offer(key, shard, members, grid)
    return stats


def grid_samples(stats: SourceStats) -> list[GridSample]:
    """The grid's samples with their conversations and thumbnails."""
    shown = []
    for shard, members in stats.grid():
        sample = parse_sample(json.loads(read_at(shard, members["json"])))
        thumbnails = [_thumbnail(read_at(shard, members[suffix])) for suffix in sample.images]
        turns = [(turn.role, turn.value) for turn in sample.conversations]
        meta = json.dumps(sample.meta, ensure_ascii=False, sort_keys=True)
        key = members["json"].name.removesuffix(".json")
        shown.append(GridSample(key, sample.id, turns, thumbnails, meta))
    return shown


def _thumbnail(data: bytes) -> str:
    """A small JPEG of an image as a data: URI (an image that cannot be decoded shows as empty)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (THUMBNAIL, THUMBNAIL))
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError):
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def reject_reasons(manifest_path: Location, manifest: Manifest, top: int = TOP_REASONS) -> list[RejectReason]:
    """The most frequent (source, reason) pairs of `rejects.jsonl`, each with its first examples."""
    counts: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    with (manifest_path.parent / manifest.rejects_file).open("rb") as handle:
        for line in io.TextIOWrapper(handle, encoding="utf-8"):
            reject = json.loads(line)
            pair = (reject["source"], reject["reason"])
            counts[pair] += 1
            if len(examples[pair]) < EXAMPLES:
                examples[pair].append((reject["id"], reject["detail"]))
    return [RejectReason(*pair, count, examples[pair]) for pair, count in counts.most_common(top)]


def composition(manifest: Manifest) -> list[dict[str, object]]:
    """Per source: counts, share, licence, expected vs actual, and tokens when counted."""
    tokens = manifest.stats.tokens.per_source if manifest.stats.tokens else {}
    total = manifest.totals.samples or 1
    rows = []
    for source in manifest.sources:
        rows.append(
            {
                "name": source.name,
                "adapter": source.source,
                "read": source.read,
                "kept": source.kept,
                "rejected": sum(source.rejected.values()),
                "by_reason": source.rejected,
                "in_mixture": source.in_mixture,
                "expected": source.expected,
                "share": source.in_mixture / total,
                "licence": source.licence,
                "tokens": tokens.get(source.name, {}),
            }
        )
    return rows


def render_report(manifest_path: Location, old_manifest_path: Location | None, grid: int) -> str:
    """The report page of the build at `manifest_path` (and its changes since `old_manifest_path`), with
    `grid` samples shown per source."""
    manifest = load_manifest(manifest_path, verified=True)
    stats = collect_samples(manifest, manifest_path, grid)
    sources = [
        {
            "name": name,
            "samples": source_stats.samples,
            "histograms": source_stats.histograms(),
            "grid": grid_samples(source_stats),
        }
        for name, source_stats in sorted(stats.items())
    ]
    diff = None
    if old_manifest_path is not None:
        old = load_manifest(old_manifest_path, verified=True)
        diff = {
            "old": str(old_manifest_path),
            "lines": manifest_diff(old, manifest),
            "rows": _diff_rows(old, manifest),
        }
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("dataprep", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE).render(
        manifest=manifest,
        composition=composition(manifest),
        sources=sources,
        rejects=reject_reasons(manifest_path, manifest),
        diff=diff,
    )


def _diff_rows(old: Manifest, new: Manifest) -> list[dict[str, object]]:
    """Per source of either build: samples in the mixture before and after."""
    before = {source.name: source.in_mixture for source in old.sources}
    after = {source.name: source.in_mixture for source in new.sources}
    return [
        {"name": name, "old": before.get(name), "new": after.get(name)}
        for name in sorted(before.keys() | after.keys())
    ]
