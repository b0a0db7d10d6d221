"""Run a stage's jobs, at most `workers` at a time, on Ray or in this process; any failure fails the
stage with one line per distinct error."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Protocol

import ray

from dataprep.progress import Measure, Progress

TICK = 1.0  # seconds between progress updates while no job finishes


class BuildError(Exception):
    """A stage could not complete; names each distinct error with a unit it failed (and how many
    more). Nothing is published."""


class UnitFailed(Exception):
    """A work unit's error, reduced to its type and message so it crosses process boundaries."""


class Job:
    """One task of a stage: a frozen dataclass of plain values whose `run()` does the work where it
    is shipped (a Ray worker or this process)."""

    retries: ClassVar[int] = 3  # attempts after a worker dies; an error raised by `run` is final

    def run(self) -> Any:
        raise NotImplementedError

    def done(self) -> Any:
        """Its result when cheap checks in the driver (markers, file stamps; nothing hashed or
        written) show the work complete, so that it need not be shipped; None: run it."""
        return None

    def records(self, result: Any) -> int:
        """Records its result accounts for, for the progress line."""
        return 0


Labelled = tuple[str, Job]  # (what a failure names, the job)


class Runner(Protocol):
    def run(
        self, stage: str, jobs: Iterable[Labelled], total: int, measure: Measure | None = None
    ) -> list[Any]:
        """The jobs' results in job order, or BuildError naming every failure. `jobs` is consumed
        only as jobs are started, so a lazy iterable holds only those in flight. `measure` gives the
        bytes moved so far for the progress line (downloads)."""
        ...


def plain(error: Exception) -> str:
    """An error as the stage's failure summary names it: `<Type>: <message>`."""
    return f"{type(error).__name__}: {error}"


@ray.remote
def _run_remote(job: Job) -> Any:
    try:
        return job.run()
    except Exception as error:
        raise UnitFailed(plain(error)) from None


class RayRunner:
    """Jobs as Ray tasks, at most `workers` in flight (all of them without a worker count). A job
    already `done` is not shipped; Ray is started (`start`) only when a job must run, so a stage,
    or a whole build, with nothing to do never starts it."""

    def __init__(
        self,
        workers: int | None,
        progress: bool | None,
        log_interval: float | None = None,
        start: Callable[[], None] | None = None,
    ) -> None:
        self.workers = workers
        self.progress = progress
        self.log_interval = log_interval
        self._start = start  # None: Ray is already running
        self.start_seconds = 0.0  # spent in `start`

    def start(self) -> None:
        """Start Ray for this runner's jobs (once; nothing when it runs already)."""
        if self._start is None:
            return
        clock = time.monotonic()
        self._start()
        self._start = None
        self.start_seconds = round(time.monotonic() - clock, 3)

    def run(
        self, stage: str, jobs: Iterable[Labelled], total: int, measure: Measure | None = None
    ) -> list[Any]:
        results: list[Any] = [None] * total
        errors: list[tuple[str, str]] = []
        progress = Progress(stage, total, enabled=self.progress, measure=measure, interval=self.log_interval)
        try:
            self._drain(iter(jobs), self.workers or total or 1, results, errors, progress)
        finally:
            progress.close()  # a line of its own, also when interrupted
        _raise_failures(stage, errors, total)
        return results

    def _drain(
        self,
        jobs: Iterator[Labelled],
        limit: int,
        results: list[Any],
        errors: list[tuple[str, str]],
        progress: Progress,
    ) -> None:
        pending: dict[ray.ObjectRef, tuple[int, str, Job]] = {}

        numbered = enumerate(jobs)

        def submit() -> bool:
            """Ship the next job not already done; False when none is left."""
            for index, (label, job) in numbered:
                result = _done(job)
                if result is not None:
                    results[index] = result
                    progress.advance(job.records(result))
                    continue
                self.start()
                pending[_run_remote.options(max_retries=job.retries).remote(job)] = (index, label, job)
                return True
            return False

        while len(pending) < limit and submit():
            pass
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=TICK)
            if not ready:  # nothing finished yet: a progress line may be due all the same
                progress.tick()
                continue
            index, label, job = pending.pop(ready[0])
            try:
                results[index] = ray.get(ready[0])
            except ray.exceptions.RayTaskError as error:
                errors.append((label, str(error.cause if isinstance(error.cause, UnitFailed) else error)))
            except ray.exceptions.RayError as error:
                errors.append((label, str(error)))
            progress.advance(0 if results[index] is None else job.records(results[index]))
            submit()


def _done(job: Job) -> Any:
    """`job.done()`; a check that fails is left to the job itself, whose run reports the error as
    its unit's."""
    try:
        return job.done()
    except Exception:
        return None


class InProcessRunner:
    """Jobs one after another in this process: the same results and failure summary as `RayRunner`,
    without starting Ray (for tests of a stage)."""

    def __init__(self, progress: bool | None = False) -> None:
        self.progress = progress

    def run(
        self, stage: str, jobs: Iterable[Labelled], total: int, measure: Measure | None = None
    ) -> list[Any]:
        results: list[Any] = []
        errors: list[tuple[str, str]] = []
        progress = Progress(stage, total, enabled=self.progress, measure=measure)
        try:
            for label, job in jobs:
                try:
                    results.append(job.run())
                except Exception as error:
                    results.append(None)
                    errors.append((label, plain(error)))
                progress.advance(0 if results[-1] is None else job.records(results[-1]))
        finally:
            progress.close()
        _raise_failures(stage, errors, total)
        return results


def _raise_failures(stage: str, errors: list[tuple[str, str]], total: int) -> None:
    if errors:
        raise BuildError(f"{stage} failed for {len(errors)} of {total} units:\n" + failures(errors))


def failures(errors: list[tuple[str, str]]) -> str:
    """One line per distinct error, naming its first unit: a full disk fails every unit alike."""
    by_error: dict[str, list[str]] = {}
    for job, error in errors:
        by_error.setdefault(error, []).append(job)
    return "\n".join(
        f"{jobs[0]}: {error}" + (f" (and {len(jobs) - 1} more units)" if len(jobs) > 1 else "")
        for error, jobs in by_error.items()
    )
