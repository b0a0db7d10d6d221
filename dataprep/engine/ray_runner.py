"""A stage's jobs as Ray tasks (`--executor ray`, and a build that joins a Ray cluster): Ray joined or
started (embedded) once a job must run, stopped at the end of the build if it was started here."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

import ray

from dataprep.engine.runner import TICK, BuildError, Job, Labelled, StageRun, UnitFailed, run_job, run_stage
from dataprep.engine.settings import BuildSettings, cluster_address
from dataprep.progress import Measure, Progress

_run_remote = ray.remote(run_job)


class RayRunner:
    """Jobs as Ray tasks, at most `workers` in flight (all of them without a worker count). A job
    already `done` is not shipped; Ray is started (`start`) only when a job must run, so a stage,
    or a whole build, with nothing to do never starts it; `stop` stops a Ray that `start` started."""

    executor = "ray"

    def __init__(
        self,
        workers: int | None,
        progress: bool | None,
        log_interval: float | None = None,
        start: Callable[[], None] | None = None,
        stop: Callable[[], None] | None = None,
    ) -> None:
        self.workers = workers
        self.progress = progress
        self.log_interval = log_interval
        self._start = start  # None: Ray is already running
        self._stop = stop
        self.start_seconds = 0.0  # spent in `start`

    def start(self) -> None:
        """Start Ray for this runner's jobs (once; nothing when it runs already)."""
        if self._start is None:
            return
        clock = time.monotonic()
        self._start()
        self._start = None
        self.start_seconds = round(time.monotonic() - clock, 3)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()

    def run(
        self, stage: str, jobs: Iterable[Labelled], total: int, measure: Measure | None = None
    ) -> list[Any]:
        progress = Progress(stage, total, enabled=self.progress, measure=measure, interval=self.log_interval)
        return run_stage(
            stage, jobs, total, progress, lambda run: self._drain(run, self.workers or total or 1)
        )

    def _drain(self, run: StageRun, limit: int) -> None:
        pending: dict[ray.ObjectRef, tuple[int, str, Job]] = {}

        def submit() -> bool:
            """Ship the next job not already done; False when none is left."""
            next_job = run.next_job()
            if next_job is None:
                return False
            self.start()
            job = next_job[2]
            pending[_run_remote.options(max_retries=job.retries).remote(job)] = next_job
            return True

        while len(pending) < limit and submit():
            pass
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=TICK)
            if not ready:  # nothing finished yet: a progress line may be due all the same
                run.progress.tick()
                continue
            index, label, job = pending.pop(ready[0])
            try:
                run.finished(index, job, ray.get(ready[0]))
            except ray.exceptions.RayTaskError as error:
                run.failed(label, str(error.cause if isinstance(error.cause, UnitFailed) else error))
            except ray.exceptions.RayError as error:
                run.failed(label, str(error))
            submit()


def ray_runner(settings: BuildSettings) -> RayRunner:
    """The runner of a build's Ray tasks: joins RAY_ADDRESS/--ray-address or starts an embedded local
    cluster once a job must run, and stops at the end of the build the Ray it started."""
    started: list[bool] = []  # whether this runner started Ray (and so stops it)

    def start() -> None:
        if not ray.is_initialized():
            _start_ray(settings)
            started.append(True)

    def stop() -> None:
        if started:
            ray.shutdown()

    return RayRunner(settings.workers, settings.progress, settings.log_interval, start, stop)


def _start_ray(settings: BuildSettings) -> None:
    """Join RAY_ADDRESS/--ray-address, or start an embedded local cluster."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = cluster_address(settings.ray_address)
    if address:
        try:
            _ray_init(address=address, logging_level=logging.WARNING)
        except (ValueError, ConnectionError) as error:
            raise BuildError(f"cannot join the Ray cluster at {address!r}: {error}") from None
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    _ray_init(
        address="local",
        num_cpus=settings.workers or os.cpu_count(),
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        logging_level=logging.WARNING,
        log_to_driver=settings.verbose,
    )


def _ray_init(**options: Any) -> None:
    """`ray.init`, whose own SIGTERM handler exits with status 15, silently, while it runs: a SIGTERM
    then stops the build as Ctrl-C does."""
    try:
        ray.init(**options)
    except SystemExit as error:
        if error.code != signal.SIGTERM:
            raise
        raise KeyboardInterrupt(f"signal {error.code}") from None
