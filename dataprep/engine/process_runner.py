"""A stage's jobs in a pool of local worker processes: the executor of a build on one machine
(`--executor processes`, the default unless the build joins a Ray cluster)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from typing import Any, NamedTuple

from dataprep.engine.runner import TICK, Job, Labelled, StageRun, UnitFailed, plain, run_job, run_stage
from dataprep.progress import Measure, Progress

# Workers are forked from a forkserver: a fresh, single-threaded interpreter that has imported the
# modules of the engine's jobs once (~0.35 s; a build's CLI starts it beside the driver's own imports).
# `fork` (~0.5 s cheaper when measured) would copy the driver, which runs other native threads as soon
# as it has imported the engine (pyarrow's jemalloc background thread and one more): a lock one of them
# holds at the fork stays held in the child forever; `spawn` starts and imports a new interpreter for
# every worker. Measured in docs/BENCHMARKS.md §9 (Executor).
START_METHOD = "forkserver"
JOB_MODULES = (
    "dataprep.engine.downloads",
    "dataprep.engine.normalize_all",
    "dataprep.engine.decontaminate",
    "dataprep.engine.entry",
    "dataprep.engine.shard_cache",
)
PR_SET_PDEATHSIG = 1  # prctl(2)
# Shared pools in a row found broken before a job could be shipped to them (their workers died at
# start, or idle): then the stage gives up on its jobs still to start, rather than start pools forever.
BROKEN_POOLS = 3


def pool_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context of the pools (START_METHOD, the job modules preloaded)."""
    context = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        context.set_forkserver_preload(list(JOB_MODULES))
    return context


def start_forkserver() -> None:
    """Start the forkserver that the pools fork their workers from, if it is not running: it imports the
    job modules (~0.3 s) while this process goes on. A failure is left to the pool's own start."""
    if START_METHOD != "forkserver":
        return
    pool_context()
    with contextlib.suppress(Exception):
        multiprocessing.forkserver.ensure_running()


def _worker_started() -> None:
    """A worker leaves Ctrl-C to the driver (which stops it), and dies with its parent (the forkserver,
    which exits with the driver), so that a driver killed outright leaves no worker running. What it
    inherits (the preloaded modules) is left out of its garbage collections: its first full one would
    traverse every inherited object and copy each page they lie on (~20 ms at a worker's first job)."""
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Flight(NamedTuple):
    """A job in flight: its place in the stage and, once it is a suspect of a dead worker, the pool of
    its own it runs in, that pool's worker and the deaths proven its own (the last one `death`)."""

    index: int
    label: str
    job: Job
    pool: ProcessPoolExecutor | None = None  # None: the shared pool
    workers: tuple[BaseProcess, ...] = ()
    deaths: int = 0
    death: str = ""


class ProcessRunner:
    """Jobs in a pool of `workers` local processes (default: one per CPU), at most `workers` in
    flight. A job already `done` is not shipped; the pool is started only when a job must run and
    serves every stage of the build until `stop`. A worker that dies (the OOM killer, a decoder
    crashing on a hostile file) fails no other job: the pool is replaced for the jobs still to start,
    the jobs it had in flight are re-run side by side, each in a one-worker pool of its own, and only
    a job whose worker dies there (or that was the only one in flight) is charged an attempt; after
    `Job.retries` more it fails. A pool found broken as a job is shipped (a worker died idle, or at
    start) is replaced the same way; the job, not started, is charged nothing."""

    executor = "processes"

    def __init__(self, workers: int | None, progress: bool | None, log_interval: float | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.progress = progress
        self.log_interval = log_interval
        self.start_seconds = 0.0  # spent starting the first pool
        self._pool: ProcessPoolExecutor | None = None
        self._apart: set[ProcessPoolExecutor] = set()  # one worker each, for a suspect of a dead worker
        self._context = pool_context()

    def start(self) -> None:
        """Start the pool (once; again only after a worker died) and wait until its workers run (or one
        died)."""
        if self._pool is not None:
            return
        clock = time.monotonic()
        self._pool = self._new_pool(self.workers)
        with contextlib.suppress(BrokenProcessPool):  # a worker died at once: `_ship` finds the pool broken
            wait([self._pool.submit(os.getpid) for _ in range(self.workers)])
        if not self.start_seconds:
            self.start_seconds = round(time.monotonic() - clock, 3)

    def stop(self) -> None:
        """Stop the workers, letting them exit (at the end of the build)."""
        for pool in self._pools():
            pool.shutdown(wait=True)
        self._pool = None
        self._apart.clear()

    def run(
        self, stage: str, jobs: Iterable[Labelled], total: int, measure: Measure | None = None
    ) -> list[Any]:
        progress = Progress(stage, total, enabled=self.progress, measure=measure, interval=self.log_interval)
        try:
            return run_stage(stage, jobs, total, progress, self._drain)
        except BaseException as error:
            if not isinstance(error, Exception):  # Ctrl-C, SIGTERM: stop every worker now
                self._kill()
            raise

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=self._context, initializer=_worker_started)

    def _pools(self) -> list[ProcessPoolExecutor]:
        """Every pool running: the shared one and the suspects' own."""
        return ([self._pool] if self._pool is not None else []) + list(self._apart)

    def _drain(self, run: StageRun) -> None:
        flights: dict[Future[Any], _Flight] = {}

        def submit() -> bool:
            """Ship the next job not already done to the shared pool; False when none is left or can start."""
            next_job = run.next_job()
            if next_job is None:
                return False
            future = self._ship(run, next_job, flights)
            if future is not None:
                flights[future] = _Flight(*next_job)
            return future is not None

        while len(flights) < self.workers and submit():
            pass
        while flights:
            finished, _ = wait(flights, timeout=TICK, return_when=FIRST_COMPLETED)
            if not finished:  # nothing finished yet: a progress line may be due all the same
                run.progress.tick()
                continue
            for future in finished:
                if future in flights:  # else recorded already, when the shared pool broke
                    self._landed(run, future, flights.pop(future), flights)
            while len(flights) < self.workers and submit():
                pass

    def _ship(
        self, run: StageRun, next_job: tuple[int, str, Job], flights: dict[Future[Any], _Flight]
    ) -> Future[Any] | None:
        """Submit the job to the shared pool. A pool found broken there (a worker died while none of
        its jobs was being collected: idle, or at start) is replaced first, the jobs it had in flight
        recovered as suspects (`_recover`); the job had not started, so it is charged nothing. None
        when BROKEN_POOLS pools in a row broke so: the job and every job still to start fail."""
        for _ in range(BROKEN_POOLS):
            self.start()
            assert self._pool is not None
            try:
                return self._pool.submit(run_job, next_job[2])
            except BrokenProcessPool:
                death = self._recover(run, [], flights)
        message = f"the worker processes keep dying at start ({death}; {BROKEN_POOLS} pools in a row)"
        failed: tuple[int, str, Job] | None = next_job
        while failed is not None:
            run.failed(failed[1], plain(UnitFailed(message)))
            failed = run.next_job()
        return None

    def _landed(
        self, run: StageRun, future: Future[Any], flight: _Flight, flights: dict[Future[Any], _Flight]
    ) -> None:
        """A job in flight returned, raised, or lost its worker."""
        self._release(flight.pool)
        if not isinstance(future.exception(), BrokenProcessPool):
            _record(run, future, flight)
        elif flight.pool is None:
            self._recover(run, [flight], flights)
        else:  # the worker of its own pool died: the death is its own
            self._run_apart(
                run, flight._replace(deaths=flight.deaths + 1, death=_death(flight.workers)), flights
            )

    def _recover(self, run: StageRun, broken: list[_Flight], flights: dict[Future[Any], _Flight]) -> str:
        """A worker of the shared pool died, and with it the pool, which is let go (the next job to
        start starts a new one). Every job it had in flight is a suspect: `broken` (taken from `flights`
        already) and those of `flights` in the shared pool. One suspect is the culprit, charged an
        attempt; several are re-run side by side, each apart, to find it. Returns how the worker died."""
        shared = {future: flight for future, flight in flights.items() if flight.pool is None}
        wait(shared)  # the broken pool fails every future it still had
        assert self._pool is not None
        workers = self._workers_of(self._pool)
        self._pool.shutdown(wait=True)
        self._pool = None
        suspects = list(broken)
        for future, flight in shared.items():
            del flights[future]
            if isinstance(future.exception(), BrokenProcessPool):
                suspects.append(flight)
            else:
                _record(run, future, flight)
        death = _death(workers)
        for suspect in suspects:
            if len(suspects) == 1:
                suspect = suspect._replace(deaths=1, death=death)
            self._run_apart(run, suspect, flights)
        return death

    def _run_apart(self, run: StageRun, suspect: _Flight, flights: dict[Future[Any], _Flight]) -> None:
        """Start `suspect` in a one-worker pool of its own, or fail it if its worker has died more than
        `job.retries` times."""
        if suspect.deaths > suspect.job.retries:
            message = f"its worker process died ({suspect.death}) {suspect.deaths} times"
            run.failed(suspect.label, plain(UnitFailed(message)))
            return
        pool = self._new_pool(1)
        self._apart.add(pool)
        future = pool.submit(run_job, suspect.job)
        workers = tuple(self._workers_of(pool))  # started by `submit`
        flights[future] = suspect._replace(pool=pool, workers=workers)

    def _release(self, pool: ProcessPoolExecutor | None) -> None:
        """Shut down a suspect's pool of its own (`pool`, None for the shared one) once its job landed."""
        if pool is not None:
            pool.shutdown(wait=True)
            self._apart.discard(pool)

    @staticmethod
    def _workers_of(pool: ProcessPoolExecutor) -> list[BaseProcess]:
        """The pool's worker processes (the executor offers no public list of them before Python 3.14)."""
        return list((pool._processes or {}).values())  # type: ignore[attr-defined]

    def _kill(self) -> None:
        """Kill every worker of every pool at once (their jobs are abandoned; completed parts and shards
        keep their markers, so the next build resumes), then let the pools go."""
        pools = self._pools()
        for pool in pools:
            for worker in self._workers_of(pool):
                worker.kill()
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
        self._apart.clear()


def _record(run: StageRun, future: Future[Any], flight: _Flight) -> None:
    """A finished job's result, or its failure as the summary names it."""
    error = future.exception()
    if error is None:
        run.finished(flight.index, flight.job, future.result())
    else:
        run.failed(flight.label, str(error) if isinstance(error, UnitFailed) else plain(error))


def _death(workers: Iterable[BaseProcess]) -> str:
    """How a broken pool's worker died: `signal N` or `exit status N` (the pool itself stops the
    others with SIGTERM, so another cause is the dead worker's)."""
    codes = sorted(
        (worker.exitcode for worker in workers if worker.exitcode), key=lambda code: code == -signal.SIGTERM
    )
    if not codes:
        return "cause unknown"
    return f"signal {-codes[0]}" if codes[0] < 0 else f"exit status {codes[0]}"
