"""The engine of a build: local worker processes, or Ray when the build joins a Ray cluster (or is
asked for Ray); started once a job must run, stopped at the end; SIGTERM stops the build as Ctrl-C
does."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from dataprep.engine.process_runner import ProcessRunner
from dataprep.engine.runner import Runner
from dataprep.engine.settings import BuildSettings, resolved_executor


def executor_of(settings: BuildSettings) -> str:
    """The executor that runs the build's jobs (`resolved_executor`)."""
    return resolved_executor(settings.executor, settings.ray_address)


@contextlib.contextmanager
def engine_session(settings: BuildSettings) -> Iterator[Runner]:
    """The runner of a build's jobs, stopped when the session ends; Ray is imported only for Ray."""
    if executor_of(settings) == "ray":
        from dataprep.engine.ray_runner import ray_runner

        runner: Runner = ray_runner(settings)
    else:
        runner = ProcessRunner(settings.workers, settings.progress, settings.log_interval)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupted) if on_main_thread else None
    try:
        yield runner
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        runner.stop()


def _interrupted(signum: int, frame: Any) -> None:
    """SIGTERM stops a build as Ctrl-C does (Ray's own handler would exit mid-stage with status 15)."""
    raise KeyboardInterrupt(f"signal {signum}")
