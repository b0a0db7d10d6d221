"""What one build is asked to do: where, with how many workers, on which Ray cluster, with a trial limit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WORK_DIR = ".work"


@dataclass(frozen=True)
class BuildSettings:
    out: Path
    workers: int | None = None
    ray_address: str | None = None
    limit: int | None = None
    progress: bool | None = None
    discard_parts: bool = False
    mirror: str | None = None  # base URL serving every http(s) download as <mirror>/<host>/<path>
    lock: Path | None = None  # a recipe's lock file: while it exists, its files pin every download

    def __post_init__(self) -> None:  # workers of a joined cluster have their own working directory
        object.__setattr__(self, "out", Path(self.out).absolute())
