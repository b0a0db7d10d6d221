"""What one build is asked to do: where (a local folder, or a store and its local work folder), with how
many workers, on which executor (local processes or Ray) and Ray cluster, with a trial limit."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dataprep.contract.store import ObjectPath

WORK_DIR = ".work"
EXECUTORS = ("auto", "processes", "ray")
Executor = Literal["auto", "processes", "ray"]


def cluster_address(ray_address: str | None) -> str | None:
    """The Ray cluster a build joins: `ray_address`, else RAY_ADDRESS (as in a Ray job submission)."""
    return ray_address or os.environ.get("RAY_ADDRESS") or None


def resolved_executor(executor: str, ray_address: str | None) -> str:
    """`processes` or `ray`: `auto` is Ray when the build joins a cluster (`cluster_address`), else
    local processes."""
    if executor != "auto":
        return executor
    return "ray" if cluster_address(ray_address) else "processes"


@dataclass(frozen=True)
class BuildSettings:
    out: Path  # the local build folder: the output itself, or the work folder of `store`
    workers: int | None = None
    ray_address: str | None = None
    executor: Executor = "auto"  # auto: Ray when the build joins a cluster, else local processes
    limit: int | None = None
    progress: bool | None = None  # False: none; None: live on a terminal, else log lines
    log_interval: float | None = None  # seconds between progress log lines off a terminal (None: 30)
    verbose: bool = False  # Ray's own worker output shown too
    discard_parts: bool = False
    mirror: str | None = None  # base URL serving every http(s) download as <mirror>/<host>/<path>
    lock: Path | None = None  # a recipe's lock file: while it exists, its files pin every download
    store: ObjectPath | None = None  # the output in a store: `out`'s shards, rejects and manifest go there

    def __post_init__(self) -> None:  # workers of a joined cluster have their own working directory
        object.__setattr__(self, "out", Path(self.out).absolute())
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {self.executor!r}")
        if self.executor == "processes" and self.ray_address:
            raise ValueError(
                "executor 'processes' runs on this machine: it joins no Ray cluster (ray_address)"
            )
