"""Jobs in local worker processes: the runner's contract (order, done jobs not shipped, bounded,
one pool for the build), a worker killed outright, and Ctrl-C / SIGTERM / SIGKILL of the driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from dataprep.engine.process_runner import BROKEN_POOLS, JOB_MODULES, ProcessRunner
from dataprep.engine.runner import BuildError, Job

from helpers.fresh_imports import imported_by
from helpers.jobs import DoneJob, FailingJob, FrozenCountJob, GateJob, KillingJob, SleepJob, attempts

TESTS = Path(__file__).resolve().parent.parent


@pytest.fixture
def runner():
    processes = ProcessRunner(workers=2, progress=False)
    yield processes
    processes.stop()


def _labelled(jobs):
    return [(f"unit {job.name}", job) for job in jobs]


def test_results_in_job_order_at_most_workers_at_once_one_pool_for_every_stage(runner, tmp_path):
    jobs = [SleepJob(str(tmp_path), f"j{index}", seconds=0.3 - 0.05 * index) for index in range(6)]
    assert runner.run("first", _labelled(jobs), len(jobs)) == [job.name for job in jobs]
    again = [SleepJob(str(tmp_path), f"k{index}", seconds=0.05) for index in range(4)]
    assert runner.run("second", _labelled(again), len(again)) == [job.name for job in again]

    spans = []
    for job in jobs:
        (_, _, started), *_ = attempts(tmp_path, job.name)
        spans.append((started, float((tmp_path / f"{job.name}.ended").read_text())))
    most = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    assert most == 2  # both workers busy, never a third job
    workers = {attempts(tmp_path, job.name)[0][0] for job in jobs + again}
    assert len(workers) == 2 and os.getpid() not in workers  # the same two processes, both stages


def test_a_worker_leaves_what_it_inherits_out_of_its_garbage_collections(runner):
    """The preloaded modules' objects are frozen: no collection traverses them (and copies their pages)."""
    frozen = runner.run("gc", [("unit gc", FrozenCountJob())], 1)[0]
    assert frozen > 10_000  # the job modules, their libraries (pydantic, PIL, ...)


def test_the_job_modules_preloaded_by_the_forkserver_import_no_http_hub_or_report_library():
    """Starting the pool pays for no library a build of local sources leaves unused."""
    assert imported_by("".join(f"import {module}\n" for module in JOB_MODULES)) == []
    assert imported_by("import dataprep.html_report\nimport dataprep.fetch as f\nf.Access.here()") == [
        "huggingface_hub",
        "jinja2",
    ]  # the probe sees a library once something does import it


def test_jobs_already_done_are_not_shipped_and_no_pool_starts_when_all_are(tmp_path):
    before = _children()
    runner = ProcessRunner(workers=2, progress=False)
    done = [DoneJob(str(tmp_path), f"d{index}") for index in range(3)]
    assert runner.run("write", _labelled(done), 3) == ["d0", "d1", "d2"]
    assert runner.start_seconds == 0 and _children() == before
    mixed = [done[0], SleepJob(str(tmp_path), "s1"), done[2]]
    assert runner.run("write", _labelled(mixed), 3) == ["d0", "s1", "d2"]
    [(worker, _, _)] = attempts(tmp_path, "s1")
    assert runner.start_seconds > 0 and _alive(worker)
    runner.stop()
    assert not _alive(worker) and sorted(path.name for path in tmp_path.iterdir()) == [
        "s1.attempts",
        "s1.ended",
    ]


def test_failures_are_summarised_one_line_per_distinct_error(runner, tmp_path):
    jobs = [FailingJob(str(tmp_path), "same") for _ in range(3)] + [FailingJob(str(tmp_path), "odd")]
    jobs.insert(1, SleepJob(str(tmp_path), "fine"))
    with pytest.raises(BuildError) as failed:
        runner.run("normalize", _labelled(jobs), len(jobs))
    assert str(failed.value).splitlines() == [
        "normalize failed for 4 of 5 units:",
        "unit same: ValueError: bad record in same (and 2 more units)",
        "unit odd: ValueError: bad record in odd",
    ]


def test_a_job_killing_its_worker_once_succeeds_on_retry_and_others_are_unaffected(runner, tmp_path):
    jobs = [SleepJob(str(tmp_path), f"s{index}", seconds=0.2) for index in range(5)]
    jobs.insert(2, KillingJob(str(tmp_path), "killer", seconds=0.1, kills=1))
    assert runner.run("normalize", _labelled(jobs), len(jobs)) == [job.name for job in jobs]
    assert len(attempts(tmp_path, "killer")) == 2
    assert all(len(attempts(tmp_path, job.name)) <= 2 for job in jobs)  # at most re-run once, as a suspect
    assert runner.run("again", _labelled([SleepJob(str(tmp_path), "after")]), 1) == ["after"]


def test_a_job_always_killing_its_worker_fails_after_its_retries_and_only_it(runner, tmp_path):
    jobs = [SleepJob(str(tmp_path), f"s{index}", seconds=0.1) for index in range(4)]
    jobs.insert(1, KillingJob(str(tmp_path), "killer", seconds=0.05))
    with pytest.raises(BuildError) as failed:
        runner.run("normalize", _labelled(jobs), len(jobs))
    assert str(failed.value).splitlines() == [
        "normalize failed for 1 of 5 units:",
        "unit killer: UnitFailed: its worker process died (signal 9) 4 times",
    ]
    alone = attempts(tmp_path, "killer")
    assert len(alone) in (4, 5)  # 4 charged; one more if it first died beside another suspect
    assert all(len(attempts(tmp_path, job.name)) <= 2 for job in jobs if job.name != "killer")


def _last_run(folder: Path, name: str) -> tuple[float, float]:
    """When the last attempt of SleepJob `name` started and ended."""
    *_, (_, _, started) = attempts(folder, name)
    return started, float((folder / f"{name}.ended").read_text())


def _stopped_failing(runner: ProcessRunner, jobs: list[Job]) -> list[str]:
    """The failure summary of stage 'normalize' of `jobs`, the runner stopped after."""
    try:
        with pytest.raises(BuildError) as failed:
            runner.run("normalize", _labelled(jobs), len(jobs))
    finally:
        runner.stop()
    return str(failed.value).splitlines()


def test_the_jobs_in_flight_when_a_worker_dies_are_re_run_side_by_side_each_in_a_pool_of_its_own(tmp_path):
    runner = ProcessRunner(workers=4, progress=False)
    innocent = [SleepJob(str(tmp_path), f"s{index}", seconds=1.0) for index in range(3)]
    jobs = [*innocent[:2], KillingJob(str(tmp_path), "killer", seconds=0.1), innocent[2]]
    assert _stopped_failing(runner, jobs) == [
        "normalize failed for 1 of 4 units:",
        "unit killer: UnitFailed: its worker process died (signal 9) 4 times",
    ]
    killed = attempts(tmp_path, "killer")
    assert len(killed) == 5  # beside the others once, then 4 times apart, each time in a new worker
    assert len({pid for pid, _, _ in killed}) == 5
    tries = {job.name: attempts(tmp_path, job.name) for job in innocent}
    assert all(len(runs) == 2 for runs in tries.values())  # a suspect once, never charged
    shared = {pid for runs in tries.values() for pid, _, _ in runs[:1]} | {killed[0][0]}
    apart = {pid for runs in tries.values() for pid, _, _ in runs[1:]}
    assert len(shared) == 4 and len(apart) == 3 and not shared & apart  # a worker of its own each
    spans = [_last_run(tmp_path, job.name) for job in innocent]
    most = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    assert most >= 2  # the re-runs overlapped (one at a time, each would start after the last ended)


def test_while_a_suspect_re_runs_apart_the_next_jobs_start_in_a_new_shared_pool(runner, tmp_path):
    slow = SleepJob(str(tmp_path), "slow", seconds=2.0)
    later = [SleepJob(str(tmp_path), f"later{index}", seconds=0.05) for index in range(3)]
    jobs = [KillingJob(str(tmp_path), "killer", seconds=0.1, kills=1), slow, *later]
    assert runner.run("normalize", _labelled(jobs), len(jobs)) == [job.name for job in jobs]
    assert len(attempts(tmp_path, "killer")) == 2 and len(attempts(tmp_path, "slow")) == 2
    _, slow_ended = _last_run(tmp_path, "slow")
    (slow_pid, forkserver, _) = attempts(tmp_path, "slow")[1]
    for job in later:
        [(pid, parent, started)] = attempts(tmp_path, job.name)
        assert started < slow_ended and pid != slow_pid and parent == forkserver


def _until(condition: Callable[[], bool], seconds: float = 60) -> bool:
    """Poll `condition` until it holds or `seconds` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_an_idle_worker_killed_between_stages_costs_the_next_stage_nothing(runner, tmp_path):
    """The pool learns of the death from the worker's exit alone, with no job of it being collected."""
    first = [SleepJob(str(tmp_path), f"a{index}") for index in range(2)]
    assert runner.run("first", _labelled(first), len(first)) == ["a0", "a1"]
    old = [worker.pid for worker in ProcessRunner._workers_of(runner._pool)]
    os.kill(old[0], signal.SIGKILL)
    assert _until(lambda: not any(map(_alive, old)))  # the pool noticed, and stopped its other workers
    second = [SleepJob(str(tmp_path), f"b{index}", seconds=0.05) for index in range(4)]
    assert runner.run("second", _labelled(second), len(second)) == [job.name for job in second]
    runs = [attempts(tmp_path, job.name) for job in first + second]
    assert all(len(tries) == 1 for tries in runs)  # each ran once
    assert not {pid for [(pid, _, _)] in runs[2:]} & set(old)  # the second stage, in a new pool


def test_a_worker_killed_between_a_wait_and_the_next_submit_costs_the_job_submitted_nothing(runner, tmp_path):
    """'quick' lands once 'gated' runs beside it; asked for the next job, the stage kills the idle
    worker of 'quick' and waits until the pool noticed: 'gated' was in flight in the broken pool, a
    suspect re-run apart; 'after' starts in a new pool, once."""
    folder = str(tmp_path)

    def jobs():
        yield "unit quick", GateJob(folder, "quick", gate="gated.attempts")
        yield "unit gated", GateJob(folder, "gated", gate="open")
        [(idle, _, _)] = attempts(tmp_path, "quick")
        [(busy, _, _)] = attempts(tmp_path, "gated")
        os.kill(idle, signal.SIGKILL)
        assert _until(lambda: not _alive(busy))  # the pool noticed, and stopped the worker of 'gated'
        (tmp_path / "open").write_text("open")
        yield "unit after", SleepJob(folder, "after")

    assert runner.run("normalize", jobs(), 3) == ["quick", "gated", "after"]
    [(quick, _, _)] = attempts(tmp_path, "quick")
    [(after, _, _)] = attempts(tmp_path, "after")
    (gated, _, _), (apart, _, _) = attempts(tmp_path, "gated")
    assert len({quick, gated, apart, after}) == 4


class _DyingAtStart(ProcessRunner):
    """Its workers exit (status 3) as they start, as when each is killed as soon as it runs."""

    pools = 0

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        self.pools += 1
        return ProcessPoolExecutor(workers, mp_context=self._context, initializer=os._exit, initargs=(3,))


def test_workers_dying_at_start_every_time_fail_the_jobs_still_to_start_after_a_few_pools(tmp_path):
    runner = _DyingAtStart(workers=2, progress=False)
    jobs = [SleepJob(str(tmp_path), f"s{index}") for index in range(3)]
    jobs.insert(1, DoneJob(str(tmp_path), "done"))
    assert _stopped_failing(runner, jobs) == [
        "normalize failed for 3 of 4 units:",
        "unit s0: UnitFailed: the worker processes keep dying at start (exit status 3; 3 pools in a row)"
        " (and 2 more units)",
    ]
    assert runner.pools == BROKEN_POOLS == 3 and not list(tmp_path.iterdir())  # no job ever ran


def _children() -> set[int]:
    """This process's live children."""
    children = set()
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[1]) == os.getpid():
            children.add(int(name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("how", "suspects"),
    [("SIGINT to the group (Ctrl-C)", False), ("SIGTERM", False), ("SIGKILL", False), ("SIGTERM", True)],
)
def test_an_interrupted_driver_leaves_no_process_behind(tmp_path, how, suspects):
    """With `suspects`, a worker has died first: j0 and j1 run apart, each in a pool of its own, and j2
    in the new shared pool when the driver is stopped."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from dataprep.engine.session import engine_session\n"
        "from dataprep.engine.settings import BuildSettings\n"
        "from helpers.jobs import KillingJob, SleepJob\n"
        f"folder = {str(tmp_path)!r}\n"
        "jobs = [(str(i), SleepJob(folder, f'j{i}', seconds=60)) for i in range(4)]\n"
        + ("jobs.insert(0, ('k', KillingJob(folder, 'killer', seconds=0.2, kills=1)))\n" if suspects else "")
        + "try:\n"
        f"    settings = BuildSettings(out=Path(folder), workers={3 if suspects else 2}, executor='processes')\n"
        "    with engine_session(settings) as runner:\n"
        "        runner.run('normalize', jobs, len(jobs))\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    expected = {"j0": 2, "j1": 2, "j2": 1} if suspects else {"j0": 1, "j1": 1}
    while time.monotonic() < deadline and any(
        len(attempts(tmp_path, name)) < count for name, count in expected.items()
    ):
        time.sleep(0.05)
    assert {name: len(attempts(tmp_path, name)) for name in expected} == expected and driver.poll() is None
    started = [attempts(tmp_path, name)[-1] for name in expected]
    if how == "SIGTERM":
        driver.send_signal(signal.SIGTERM)
    else:
        os.killpg(driver.pid, signal.SIGINT if how.startswith("SIGINT") else signal.SIGKILL)
    assert driver.wait(timeout=60) == (-signal.SIGKILL if how == "SIGKILL" else 3)
    workers_and_forkserver = {pid for pid, _, _ in started} | {parent for _, parent, _ in started}
    assert driver.pid not in workers_and_forkserver
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(map(_alive, workers_and_forkserver)):
        time.sleep(0.05)
    assert not [pid for pid in workers_and_forkserver if _alive(pid)]
    assert not list(tmp_path.glob("*.ended"))  # no job went on to its end
