"""The adapter-side records: a conversation with its images as an adapter reads it, or a reject.

The conversation rules they are held to are the shard contract's (`dataprep.contract.sample`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.contract.sample import Turn


@dataclass(frozen=True)
class ImageFile:
    """An image stored as a file, named relative to a root it must not escape."""

    root: Path
    relpath: str


@dataclass(frozen=True)
class ImageBytes:
    """An image whose encoded bytes the source already holds (parquet cells, pickled arrays)."""

    data: bytes
    name: str = ""


ImageInput = ImageFile | ImageBytes


@dataclass
class Sample:
    """A conversation as an adapter reads it; the build rejects one that breaks the contract's
    conversation rules (`conversation_problem`)."""

    id: str
    conversations: list[Turn]
    images: list[ImageInput] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    """A raw record that cannot become a sample, with a machine-readable reason code."""

    id: str
    reason: str
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "reason": self.reason, "detail": self.detail}

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> Reject:
        return cls(fields["id"], fields["reason"], fields["detail"])


Record = Sample | Reject
