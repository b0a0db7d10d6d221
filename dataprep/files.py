"""General file helpers: canonical JSON, a file's sha256, atomic writes, and a file's stamp."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

PARTIAL_SUFFIX = ".partial"
"""A file being written lies beside its final name with this suffix until it is complete."""


def canonical_json(value: Any) -> bytes:
    """The one JSON encoding used for hashed content: sorted keys, UTF-8, no spaces. Raises
    ValueError for a NaN or infinite float (not JSON) and UnicodeEncodeError for a lone surrogate."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


class Readable(Protocol):
    """A local `Path`, or an object of a store (`dataprep.contract.store.ObjectPath`)."""

    def open(self, mode: str = "rb") -> BinaryIO: ...


class Stat(Protocol):
    """What a stamp reads of an `os.stat_result` (or of an object's `ObjectStat`)."""

    st_size: int
    st_mtime_ns: int


def sha256_file(path: Readable, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write a small file so that readers see either nothing or all of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def holds(path: Path, data: bytes) -> bool:
    """Whether the file at `path` holds exactly `data`."""
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def same_file(path: Path, other: Path) -> bool:
    """Whether the files at `path` and `other` both exist with the same bytes."""
    return (
        path.is_file()
        and other.is_file()
        and path.stat().st_size == other.stat().st_size
        and sha256_file(path) == sha256_file(other)
    )


def write_unless_same(path: Path, data: bytes) -> None:
    """`write_atomic`, unless the file already holds exactly `data` (a re-run rewrites nothing)."""
    if not holds(path, data):
        write_atomic(path, data)


@dataclass(frozen=True, order=True)
class FileStamp:
    """A file as it was when read: a later run treats it as changed when its size or mtime differ."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, info: Stat) -> FileStamp:
        return cls(info.st_size, info.st_mtime_ns)

    @classmethod
    def read(cls, path: str | Path) -> FileStamp:
        """The file's stamp now; raises OSError when it cannot be stat'ed."""
        return cls.of(os.stat(path))

    @classmethod
    def from_json(cls, value: list[int]) -> FileStamp:
        size, mtime_ns = value
        return cls(size, mtime_ns)

    def to_json(self) -> list[int]:
        """`[size, mtime_ns]`, as markers and inputs files record it."""
        return [self.size, self.mtime_ns]

    def matches(self, path: str | Path) -> bool:
        """Whether the file at `path` still has this stamp (False when it is gone)."""
        try:
            return FileStamp.read(path) == self
        except OSError:
            return False
