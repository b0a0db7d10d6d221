"""The small protocol every source adapter follows.

An adapter knows one upstream layout and nothing of Ray, shards or manifests: it lists
independent work units, and turns each unit's raw records into `Sample`s or `Reject`s.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from dataprep.paths import resolve_inside
from dataprep.sample import Record

SHORT_ANSWER_SUFFIX = "\nAnswer the question using a single word or phrase."
MULTIPLE_CHOICE_SUFFIX = "\nAnswer with the option's letter from the given choices directly."

T = TypeVar("T")


class SourceOptions(BaseModel):
    """Adapter-specific recipe options; unknown keys are errors, and numbers and switches are not
    read from booleans or strings (lists given for tuples need `Field(strict=False)`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Source(ABC):
    """Base class of source adapters. Subclasses set `name`, `licence`, `Options`."""

    name: ClassVar[str]
    licence: ClassVar[str]
    version: ClassVar[str] = "1"
    Options: ClassVar[type[SourceOptions]] = SourceOptions

    def __init__(self, root: Path, options: SourceOptions) -> None:
        self.root = Path(root)
        self.options = options

    def roots(self) -> list[Path]:
        """Folders this source may read from; image files must stay inside one of them."""
        return [self.root]

    def file(self, relpath: str) -> Path:
        """A path named by a record, resolved inside the source root (raises `UnsafePath`)."""
        return resolve_inside(self.root, relpath)

    @abstractmethod
    def inputs(self) -> list[Path]:
        """The annotation/data files this source reads; hashed and listed as artifacts."""

    def missing(self) -> list[str]:
        """Required inputs that are absent, as human-readable descriptions."""
        return [str(path) for path in self.inputs() if not path.exists()]

    @abstractmethod
    def units(self) -> list[str]:
        """Names of independent work units, in a stable order."""

    @abstractmethod
    def read(self, unit: str) -> Iterator[Record]:
        """Yield the unit's records in a stable order."""


def pick(choices: Sequence[T], key: str) -> T:
    """Choose one item deterministically from `key` (same key, same choice, on any machine)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return choices[int.from_bytes(digest[:8], "big") % len(choices)]


def option_lines(options: Sequence[str]) -> str:
    """Render multiple-choice options as lines `A. ...`, `B. ...`."""
    return "\n".join(f"{chr(ord('A') + index)}. {text}" for index, text in enumerate(options))


def image_cell_bytes(cell: object) -> bytes | None:
    """The encoded bytes of a parquet image cell: a `{bytes, path}` struct or plain binary."""
    if isinstance(cell, dict):
        cell = cell.get("bytes")
    return cell if isinstance(cell, bytes) else None


PARQUET_BUFFER = 1 << 20
"""Read size of a buffered parquet stream. pyarrow decodes a whole row group whatever the batch
size; unbuffered (or pre-buffered, its default) it also holds the row group's raw column chunks."""


def open_parquet(path: Path, **options: Any) -> pq.ParquetFile:
    """`pq.ParquetFile(path, **options)`; a file that is not parquet (cut short, another format)
    is a ValueError naming it (running out of memory stays a MemoryError)."""
    try:
        return pq.ParquetFile(path, **options)
    except MemoryError:  # pyarrow's ArrowMemoryError too: the file may well be fine
        raise
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path}: not a readable parquet file ({error})") from None


def parquet_batches(path: Path, columns: list[str], **options: Any) -> Iterator[pa.RecordBatch]:
    """`ParquetFile(path).iter_batches(columns=…)` through a buffered stream, first checking the
    file has those columns (a file of another layout is named, not a KeyError deep in pyarrow);
    a file that cannot be decoded (corrupt pages) is a ValueError naming it."""
    parquet = open_parquet(path, buffer_size=PARQUET_BUFFER, pre_buffer=False)
    absent = [column for column in columns if column not in parquet.schema_arrow.names]
    if absent:
        raise ValueError(
            f"{path}: no column {', '.join(absent)} (has {', '.join(parquet.schema_arrow.names)})"
        )
    try:
        yield from parquet.iter_batches(columns=columns, **options)
    except MemoryError:
        raise
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path}: not a readable parquet file ({error})") from None
