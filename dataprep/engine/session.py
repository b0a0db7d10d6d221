"""The Ray session of a build: Ray joined or started (embedded) once a job must run, stopped at its end;
SIGTERM stops the build as Ctrl-C does."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import ray

from dataprep.engine.runner import BuildError, RayRunner
from dataprep.engine.settings import BuildSettings


@contextlib.contextmanager
def ray_session(settings: BuildSettings) -> Iterator[RayRunner]:
    """The runner of a build's Ray tasks; Ray itself is started only when a job must run (joining
    RAY_ADDRESS/--ray-address, or an embedded local cluster, stopped when the session ends)."""
    started: list[bool] = []  # whether this session started Ray (and so stops it)

    def start() -> None:
        if not ray.is_initialized():
            _start_ray(settings)
            started.append(True)

    runner = RayRunner(settings.workers, settings.progress, settings.log_interval, start)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupted) if on_main_thread else None
    try:
        yield runner
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        if started:
            ray.shutdown()


def _start_ray(settings: BuildSettings) -> None:
    """Join RAY_ADDRESS/--ray-address, or start an embedded local cluster."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
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


def _interrupted(signum: int, frame: Any) -> None:
    """SIGTERM stops a build as Ctrl-C does (Ray's own handler would exit mid-stage with status 15)."""
    raise KeyboardInterrupt(f"signal {signum}")
