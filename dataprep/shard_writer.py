"""Write one output shard from normalized parts, byte for byte deterministic, with its statistics."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.contract.shards import (
    MemberLocation,
    MemberReader,
    member_locations,
    split_member_name,
    write_shard_index,
    write_tar,
)
from dataprep.files import sha256_file
from dataprep.part_members import PartReader
from dataprep.tokens import TokenCounter


@dataclass(frozen=True, slots=True)
class SampleCopy:
    """Where one mixture sample's members lie: (suffix, offset, size) in a part tar, and the digest
    of what the part holds of them (a shard is rewritten when a sample it holds changes). The driver
    makes them for one shard's job at a time, from the kept samples it holds packed (`engine/kept.py`)."""

    key: str
    part: str
    members: tuple[tuple[str, int, int], ...]
    digest: str


@dataclass
class Summary:
    """Running count/sum/min/max of one statistic."""

    count: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    def merge(self, other: Summary) -> None:
        self.count += other.count
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)

    def to_json(self) -> dict[str, float]:
        """Its fields, for `Summary(**fields)` to restore; an empty one leaves out its infinite
        bounds (not JSON)."""
        bounds = {"low": self.low, "high": self.high} if self.count else {}
        return {"count": self.count, "total": self.total, **bounds}

    def report(self, with_total: bool = False) -> dict[str, float]:
        if not self.count:
            return {"count": 0, "total": 0} if with_total else {"count": 0}
        return {
            "count": self.count,
            "mean": round(self.total / self.count, 3),
            "min": self.low,
            "max": self.high,
            **({"total": self.total} if with_total else {}),
        }


@dataclass
class ShardStats:
    turns: Summary = field(default_factory=Summary)
    text_chars: Summary = field(default_factory=Summary)
    images_per_sample: Summary = field(default_factory=Summary)
    image_width: Summary = field(default_factory=Summary)
    image_height: Summary = field(default_factory=Summary)

    def add(self, document: dict[str, Any]) -> None:
        self.turns.add(len(document["conversations"]))
        self.text_chars.add(sum(len(turn["value"]) for turn in document["conversations"]))
        self.images_per_sample.add(len(document["images"]))
        for width, height in document["image_sizes"]:
            self.image_width.add(width)
            self.image_height.add(height)

    def merge(self, other: ShardStats) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).merge(getattr(other, name))

    def to_json(self) -> dict[str, dict[str, float]]:
        return {name: getattr(self, name).to_json() for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, fields: dict[str, dict[str, float]]) -> ShardStats:
        return cls(**{name: Summary(**values) for name, values in fields.items()})


@dataclass(frozen=True)
class TokenCount:
    """A shard's tokens: summaries per source, and each sample's count by key (the token sidecar)."""

    per_source: dict[str, Summary]
    per_key: dict[str, int]


class TokenTally:
    """Tokens per sample, summarized per source (a sample's `source` is its recipe entry's label);
    samples are gathered and tokenized in one batch by `count()`."""

    def __init__(self, counter: TokenCounter) -> None:
        self._counter = counter
        self._keys: list[str] = []
        self._documents: list[dict[str, Any]] = []

    def add(self, key: str, document: dict[str, Any]) -> None:
        self._keys.append(key)
        self._documents.append({name: document[name] for name in ("source", "conversations", "images")})

    def count(self) -> TokenCount:
        summaries: dict[str, Summary] = defaultdict(Summary)
        counts = self._counter.count_all(self._documents)
        for document, count in zip(self._documents, counts, strict=True):
            summaries[document["source"]].add(count)
        return TokenCount(dict(summaries), dict(zip(self._keys, counts, strict=True)))


@dataclass(frozen=True)
class ShardResult:
    sha256: str
    bytes: int
    samples: int
    stats: ShardStats
    tokens: TokenCount | None
    index_sha256: str


def write_shard(
    path: Path,
    work_dir: Path,
    copies: list[SampleCopy],
    counter: TokenCounter | None = None,
    *,
    roots: Iterable[str],
) -> ShardResult:
    """Copy each sample's members from its part (an image file the part refers to, from that file, below
    one of `roots`: the sources' real roots) into the shard at `path` (atomic), then
    write its sidecar index; tally tokens per source when a counter is given."""
    stats = ShardStats()
    tally = TokenTally(counter) if counter else None

    parts: dict[str, Path] = {}

    def members(reader: PartReader) -> Iterator[tuple[str, bytes]]:
        for copy in copies:
            part = parts.get(copy.part) or parts.setdefault(copy.part, work_dir / copy.part)
            for suffix, offset, size in copy.members:
                data = reader.read(part, MemberLocation(suffix, offset, size))
                if suffix == "json":
                    document = json.loads(data)
                    stats.add(document)
                    if tally:
                        tally.add(copy.key, document)
                yield f"{copy.key}.{suffix}", data

    digest = hashlib.sha256()  # of the bytes as they are written: the shard is not read back
    with PartReader(roots) as reader:  # each part opened once, however many samples it gives
        index = write_shard_index(path, write_tar(path, members(reader), digest))
    tokens = tally.count() if tally else None
    size = path.stat().st_size
    return ShardResult(digest.hexdigest(), size, len(copies), stats, tokens, sha256_file(index))


def shard_tokens(path: Path, counter: TokenCounter) -> TokenCount:
    """The tokens of a shard already written (reads its json members only)."""
    tally = TokenTally(counter)
    with MemberReader() as reader:
        for location in member_locations(path):
            key, suffix = split_member_name(location.name)
            if suffix == "json":
                tally.add(key, json.loads(reader.read(path, location)))
    return tally.count()
