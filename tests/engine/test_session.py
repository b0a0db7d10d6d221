"""The engine session: local processes unless the build joins a Ray cluster (then Ray is imported);
on Ray, SIGTERM stops a build as Ctrl-C does and Ray starts only when a job must run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataprep.engine.session import executor_of
from dataprep.engine.settings import BuildSettings

from helpers.fresh_imports import UNUSED_BY_LOCAL_BUILDS, UNUSED_BY_THE_DRIVER
from helpers.upstream import recipe_yaml


@pytest.mark.parametrize(
    ("executor", "address", "environment", "expected"),
    [
        ("auto", None, None, "processes"),
        ("auto", "ray://head:10001", None, "ray"),
        ("auto", None, "head:6379", "ray"),  # as in a Ray job submission
        ("ray", None, None, "ray"),
        ("processes", None, "head:6379", "processes"),
    ],
)
def test_auto_is_ray_when_the_build_joins_a_cluster_else_local_processes(
    tmp_path, monkeypatch, executor, address, environment, expected
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if environment:
        monkeypatch.setenv("RAY_ADDRESS", environment)
    assert executor_of(BuildSettings(out=tmp_path, executor=executor, ray_address=address)) == expected


def _builds_in_a_fresh_process(upstream, tmp_path: Path, before: str, builds: str) -> str:
    """Run `before`, then `builds` (with `recipe` and `out` set: the upstream's recipe into
    tmp_path/out) in a fresh process, without RAY_ADDRESS; its stdout."""
    data_root, _ = upstream
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(recipe_yaml("mix", data_root, tmp_path / "out"))
    script = (
        f"{before}"
        "from pathlib import Path\n"
        "from dataprep.engine.build import build\n"
        "from dataprep.engine.settings import BuildSettings\n"
        "from dataprep.recipe.load import load_recipe\n"
        f"recipe, out = load_recipe(Path({str(recipe)!r})), Path({str(tmp_path / 'out')!r})\n"
        f"{builds}"
    )
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.decode()


def test_a_build_on_local_processes_imports_no_ray_nor_network_or_report_libraries(upstream, tmp_path):
    """Nor, for local sources, the HTTP and hub libraries of downloads, nor the HTML report's jinja2;
    nor, in the driver, what only workers use (the resampler, pyarrow's compute functions)."""
    builds = (
        "manifest = build(recipe, BuildSettings(out=out, workers=2, progress=False))\n"
        f"unused = [name for name in {UNUSED_BY_LOCAL_BUILDS + UNUSED_BY_THE_DRIVER!r} if name in sys.modules]\n"
        "print(manifest.build.executor, manifest.totals.samples, 'ray' in sys.modules, unused)\n"
    )
    printed = _builds_in_a_fresh_process(upstream, tmp_path, "import sys\n", builds)
    executor, samples, imported_ray, unused = printed.split(maxsplit=3)
    assert executor == "processes" and int(samples) > 0 and imported_ray == "False" and unused.strip() == "[]"


def _interrupted_session(tmp_path: Path, before: str, inside: str) -> subprocess.CompletedProcess[bytes]:
    """Run `before`, then a Ray session with `inside` in it, in a fresh process that exits 3 when
    the session ends in KeyboardInterrupt."""
    script = (
        "import os, signal, sys, threading, time\n"
        "from pathlib import Path\n"
        "from dataprep.engine.session import engine_session\n"
        "from dataprep.engine.settings import BuildSettings\n"
        f"{before}"
        "try:\n"
        f"    with engine_session(BuildSettings(out=Path({str(tmp_path)!r}), workers=1, executor='ray')) as runner:\n"
        f"{inside}"
        "        time.sleep(30)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)


def test_sigterm_stops_a_build_as_ctrl_c_does(tmp_path):
    done = _interrupted_session(tmp_path, "", "        os.kill(os.getpid(), signal.SIGTERM)\n")
    assert done.returncode == 3, done.stderr.decode()[-2000:]


def test_sigterm_while_ray_starts_stops_a_build_as_ctrl_c_does(tmp_path):
    """Ray's `init` installs its own SIGTERM handler (exit 15, silently) for as long as it runs."""
    before = (
        "def term_once_ray_handles_it():\n"
        "    while 'sigterm_handler' not in getattr(signal.getsignal(signal.SIGTERM), '__qualname__', ''):\n"
        "        time.sleep(0.001)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "threading.Thread(target=term_once_ray_handles_it, daemon=True).start()\n"
    )
    done = _interrupted_session(tmp_path, before, "        runner.start()\n")
    assert done.returncode == 3, done.stderr.decode()[-2000:]


def test_a_finished_builds_rerun_starts_no_ray_and_writes_the_same_manifest(upstream, tmp_path):
    """In a fresh process: the first build starts (and stops) an embedded Ray for its jobs; the
    re-run finds every part, shard and marker complete and never calls `ray.init`."""
    before = (
        "import json, ray\n"
        "inits = []\n"
        "real_init = ray.init\n"
        "def counted_init(*args, **kwargs):\n"
        "    inits.append(ray.is_initialized())\n"
        "    return real_init(*args, **kwargs)\n"
        "ray.init = counted_init\n"
    )
    builds = (
        "runs = []\n"
        "for _ in range(2):\n"
        "    manifest = build(recipe, BuildSettings(out=out, workers=2, progress=False, executor='ray'))\n"
        "    written = json.loads((out / 'manifest.json').read_bytes())\n"
        "    runs.append({'inits': len(inits), 'running_after': ray.is_initialized(),\n"
        "                 'stages': manifest.build.stages, 'manifest': {**written, 'build': None}})\n"
        "print(json.dumps(runs))\n"
    )
    printed = _builds_in_a_fresh_process(upstream, tmp_path, before, builds)
    first, rerun = json.loads(printed.splitlines()[-1])
    assert first["inits"] == 1 and first["stages"]["engine_start"] > 0 and not first["running_after"]
    assert (
        rerun["inits"] == 1 and rerun["stages"]["engine_start"] == 0 and rerun["stages"]["engine_stop"] < 0.5
    )
    assert rerun["manifest"] == first["manifest"] and first["manifest"]["totals"]["samples"] > 0
