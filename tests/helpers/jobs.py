"""Jobs for the runner tests, importable by worker processes: they sleep, wait for a file, fail, are done
already, or kill their own worker; each leaves a trace in a folder (its pid, its worker's parent, its
attempts)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from dataprep.engine.runner import Job


def _trace(folder: str, name: str) -> int:
    """Note an attempt of job `name` (one line: pid, parent pid, start time); the attempts so far."""
    with open(Path(folder) / f"{name}.attempts", "a") as handle:
        handle.write(f"{os.getpid()} {os.getppid()} {time.time()}\n")
    return len((Path(folder) / f"{name}.attempts").read_text().splitlines())


@dataclass(frozen=True)
class SleepJob(Job):
    """Returns its name after `seconds`; `<name>.ended` holds when it ended."""

    folder: str
    name: str
    seconds: float = 0.0

    def run(self) -> str:
        _trace(self.folder, self.name)
        time.sleep(self.seconds)
        (Path(self.folder) / f"{self.name}.ended").write_text(str(time.time()))
        return self.name

    def records(self, result: str) -> int:
        return 1


@dataclass(frozen=True)
class DoneJob(SleepJob):
    """Complete before it starts: its result comes from `done`, and running it would fail."""

    def run(self) -> str:
        raise AssertionError(f"{self.name} was shipped though done")

    def done(self) -> str:
        return self.name


@dataclass(frozen=True)
class FailingJob(SleepJob):
    def run(self) -> str:
        _trace(self.folder, self.name)
        raise ValueError(f"bad record in {self.name}")


@dataclass(frozen=True)
class KillingJob(SleepJob):
    """SIGKILLs its own worker in its first `kills` attempts (every attempt when `kills` is None)."""

    kills: int | None = None

    def run(self) -> str:
        attempt = _trace(self.folder, self.name)
        time.sleep(self.seconds)
        if self.kills is None or attempt <= self.kills:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.name


def attempts(folder: Path, name: str) -> list[tuple[int, int, float]]:
    """Each attempt of job `name`: its worker's pid, that worker's parent pid, when it started."""
    path = folder / f"{name}.attempts"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(pid), int(parent), float(started)) for pid, parent, started in map(str.split, lines)]


@dataclass(frozen=True)
class ParentJob(Job):
    """Returns the pid of its worker's parent (the forkserver, for a pool of local processes)."""

    def run(self) -> int:
        return os.getppid()

    def records(self, result: int) -> int:
        return 1


@dataclass(frozen=True)
class GateJob(SleepJob):
    """Returns its name once the file `gate` in its folder has something in it (a minute at most)."""

    gate: str = ""

    def run(self) -> str:
        _trace(self.folder, self.name)
        gate, deadline = Path(self.folder) / self.gate, time.monotonic() + 60
        while not (gate.exists() and gate.stat().st_size):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {self.gate} never came")
            time.sleep(0.01)
        return self.name


@dataclass(frozen=True)
class FrozenCountJob(Job):
    """Returns how many objects its worker's garbage collector leaves out (`gc.freeze`)."""

    def run(self) -> int:
        import gc

        return gc.get_freeze_count()
