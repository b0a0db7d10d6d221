"""What every runner of a stage's jobs shares: the `Runner` protocol, `Job`, the failure summary, and
`InProcessRunner` (jobs in this process, for tests). The runners of a build: `process_runner`
(local worker processes) and `ray_runner` (Ray tasks)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol

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
    executor: str  # what runs the jobs, as the manifest's build times name it
    start_seconds: float  # spent starting the engine (its workers), once a job had to run

    def run(
        self, stage: str, jobs: Iterable[Labelled], total: int, measure: Measure | None = None
    ) -> list[Any]:
        """The jobs' results in job order, or BuildError naming every failure. `jobs` is consumed
        only as jobs are started, so a lazy iterable holds only those in flight. `measure` gives the
        bytes moved so far for the progress line (downloads)."""
        ...

    def stop(self) -> None:
        """Stop what this runner started (at the end of a build)."""
        ...


def plain(error: Exception) -> str:
    """An error as the stage's failure summary names it: `<Type>: <message>`."""
    return f"{type(error).__name__}: {error}"


def run_job(job: Job) -> Any:
    """`job.run()` where it is shipped (a worker process, a Ray task): its error reduced to UnitFailed,
    so that it crosses process boundaries."""
    try:
        return job.run()
    except Exception as error:
        raise UnitFailed(plain(error)) from None


class StageRun:
    """One stage's jobs while they run: the results by job index, the failures, the progress line."""

    def __init__(self, jobs: Iterable[Labelled], total: int, progress: Progress) -> None:
        self.results: list[Any] = [None] * total
        self.errors: list[tuple[str, str]] = []
        self.progress = progress
        self._numbered = enumerate(jobs)  # consumed only as jobs are started

    def next_job(self) -> tuple[int, str, Job] | None:
        """The next job that must run (those already `done` are recorded on the way); None: none left."""
        for index, (label, job) in self._numbered:
            result = done_result(job)
            if result is None:
                return index, label, job
            self.finished(index, job, result)
        return None

    def finished(self, index: int, job: Job, result: Any) -> None:
        self.results[index] = result
        self.progress.advance(job.records(result))

    def failed(self, label: str, error: str) -> None:
        self.errors.append((label, error))
        self.progress.advance(0)


def run_stage(
    stage: str, jobs: Iterable[Labelled], total: int, progress: Progress, drain: Callable[[StageRun], None]
) -> list[Any]:
    """`drain` runs the stage's jobs; their results in job order, or BuildError naming every failure."""
    run = StageRun(jobs, total, progress)
    try:
        drain(run)
    finally:
        progress.close()  # a line of its own, also when interrupted
    _raise_failures(stage, run.errors, total)
    return run.results


def done_result(job: Job) -> Any:
    """`job.done()`; a check that fails is left to the job itself, whose run reports the error as
    its unit's."""
    try:
        return job.done()
    except Exception:
        return None


class InProcessRunner:
    """Jobs one after another in this process, through the same stage loop as the build's runners
    (jobs already `done` are not run, the same results and failure summary), starting no engine (for
    tests of a stage)."""

    executor = "in_process"
    start_seconds = 0.0

    def __init__(self, progress: bool | None = False) -> None:
        self.progress = progress

    def stop(self) -> None:
        pass

    def run(
        self, stage: str, jobs: Iterable[Labelled], total: int, measure: Measure | None = None
    ) -> list[Any]:
        return run_stage(
            stage, jobs, total, Progress(stage, total, enabled=self.progress, measure=measure), _drain_here
        )


def _drain_here(run: StageRun) -> None:
    while (next_job := run.next_job()) is not None:
        index, label, job = next_job
        try:
            run.finished(index, job, job.run())
        except Exception as error:
            run.failed(label, plain(error))


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
