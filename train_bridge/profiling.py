"""Optional torch.profiler capture of single training steps: for each captured step, the host time
in operators, the device time in kernels, and the operators that took it (text, one section per
step). Kernel time well below the step's wall time means the step is host-bound."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.autograd import DeviceType
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
        cpu_ms = sum(event.self_cpu_time_total for event in averages if not event.is_user_annotation) / 1000
        device_ms = (
            sum(
                event.self_device_time_total
                for event in averages
                if event.device_type != DeviceType.CPU and not event.is_user_annotation
            )
            / 1000
        )
        with path.open("a") as out:
            out.write(
                f"== step {skip + captured}: host ops {cpu_ms:.1f} ms, device kernels {device_ms:.1f} ms\n"
            )
            out.write(
                averages.table(
                    sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=20
                )
                + "\n"
            )

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    plan = schedule(skip_first=skip, wait=0, warmup=0, active=1, repeat=steps)  # one trace per step
    with profile(activities=activities, schedule=plan, on_trace_ready=write) as prof:

        def step() -> None:
            nonlocal stepping
            stepping = True
            prof.step()
            stepping = False

        yield step
