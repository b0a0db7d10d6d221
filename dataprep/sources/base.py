"""The small protocol every source adapter follows.

An adapter knows one upstream layout and nothing of Ray, shards or manifests: it lists
independent work units, and turns each unit's raw records into `Sample`s or `Reject`s.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from dataprep.paths import resolve_inside
from dataprep.sample import Record

MAX_PARSING_UNITS = 64
"""The most units a file gets when each unit must parse all of it (a JSON array, a pickle): enough
for a 64-core cluster, while the parsing, repeated per unit, stays a fraction of the image checks."""


def parsing_unit_count(records: int, unit_records: int) -> int:
    """How many units of about `unit_records` each a file of `records` makes when every unit parses
    the whole file (1 to `MAX_PARSING_UNITS`)."""
    return max(1, min(MAX_PARSING_UNITS, math.ceil(records / unit_records)))


class SourceOptions(BaseModel):
    """Adapter-specific recipe options; unknown keys are errors, and numbers and switches are not
    read from booleans or strings (lists given for tuples need `Field(strict=False)`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Source(ABC):
    """Base class of source adapters. Subclasses set `name`, `licence`, `Options` (and `citation`,
    how the publishers ask to be cited, where they do)."""

    name: ClassVar[str]
    licence: ClassVar[str]
    citation: ClassVar[str | None] = None
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
