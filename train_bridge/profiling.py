"""Optional torch.profiler capture of single training steps: for each captured step, how long the
device was busy and which operators took the time (written as text, one section per step)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule


@contextmanager
def step_profiler(
    folder: Path | None, rank: int, skip: int = 4, steps: int = 6
) -> Iterator[Callable[[], None]]:
    """Yield a `step()` to call after each training step; with a folder, steps skip+1 … skip+steps
    are captured into `folder/profile-rank{rank}.txt`. Without one, `step()` does nothing."""
    if folder is None:
        yield lambda: None
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"profile-rank{rank}.txt"
    path.write_text("")
    cuda = torch.cuda.is_available()
    captured = 0

    stepping = False

    def write(prof: profile) -> None:
        nonlocal captured
        if not stepping:  # the profiler's flush on exit: a partial step after the last one
            return
        captured += 1
        averages = prof.key_averages()
        key = "self_device_time_total" if cuda else "self_cpu_time_total"
        busy_ms = sum(getattr(event, key) for event in averages) / 1000
        with path.open("a") as out:
            out.write(f"== step {skip + captured}: {'device' if cuda else 'cpu'} busy {busy_ms:.1f} ms\n")
            out.write(averages.table(sort_by=key, row_limit=20) + "\n")

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    plan = schedule(skip_first=skip, wait=0, warmup=0, active=1, repeat=steps)  # one trace per step
    with profile(activities=activities, schedule=plan, on_trace_ready=write) as prof:

        def step() -> None:
            nonlocal stepping
            stepping = True
            prof.step()
            stepping = False

        yield step
