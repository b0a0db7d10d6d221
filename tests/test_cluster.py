"""The same build joins a running Ray cluster (`--ray-address`) or runs as a Ray job (the default
executor then is Ray), with the same content as an embedded Ray's and local processes'."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataprep.fixtures import generate_all

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real one-node cluster started with `ray start --head`, on loopback only."""
    temp = tmp_path_factory.mktemp("ray")
    port, dashboard = _free_port(), _free_port()
    # every port the head opens is chosen free, so another Ray on this machine cannot collide
    extra_ports = [
        "--ray-client-server-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.2",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        "--include-dashboard=true",
        "--num-cpus=2",
        "--memory=2000000000",
        "--object-store-memory=200000000",
        f"--temp-dir={temp}",
        *(f"{flag}={_free_port()}" for flag in extra_ports),
    ]
    log = temp / "head.log"
    with open(log, "wb") as sink:
        head = subprocess.Popen(
            command, env=env, start_new_session=True, stdout=sink, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and head.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", dashboard)) == 0:
                break
        time.sleep(0.5)
    else:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
        pytest.fail("the Ray head did not start:\n" + log.read_text()[-3000:])
    yield f"127.0.0.2:{port}", f"http://127.0.0.1:{dashboard}", env
    os.killpg(head.pid, signal.SIGTERM)
    head.wait(timeout=60)


def _recipe(tmp_path: Path, out: Path) -> Path:
    data = tmp_path / "data"
    if not data.exists():
        generate_all(data)
    recipe = tmp_path / f"{out.name}.yaml"
    recipe.write_text(
        f"name: cluster\nseed: 5\ndata_root: {data}\noutput: {{dir: {out}, shard_size: 8}}\n"
        "sources:\n  - source: dvqa\n    path: dvqa\n  - source: synthdog_en\n    path: synthdog_en\n"
    )
    return recipe


def _content_and_executor(out: Path) -> tuple[str, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest["content_sha256"], manifest["build"]["executor"]


def test_ray_address_and_job_submit_give_the_embedded_result(cluster, tmp_path):
    address, dashboard, env = cluster
    cli = [sys.executable, "-m", "dataprep.cli", "build", "--quiet"]
    for out, executor in (("embedded", "ray"), ("processes", "auto")):
        alone = subprocess.run(
            [*cli, str(_recipe(tmp_path, tmp_path / out)), "--executor", executor],
            env={name: value for name, value in env.items() if name != "RAY_ADDRESS"},
            capture_output=True,
        )
        assert alone.returncode == 0, alone.stderr.decode()

    joined = subprocess.run(  # a relative output folder: the cluster's workers run elsewhere
        [*cli, str(_recipe(tmp_path, Path("joined"))), "--ray-address", address],
        env=env,
        capture_output=True,
        cwd=tmp_path,
    )
    assert joined.returncode == 0, joined.stderr.decode()

    # as documented: `cd` to the folder the recipe's relative paths are meant from (a job's own
    # working directory is Ray's), here a recipe with a relative data root and output folder
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.yaml").write_text(
        "name: cluster\nseed: 5\ndata_root: ../data\noutput: {dir: job-out, shard_size: 8}\n"
        "sources:\n  - source: dvqa\n    path: dvqa\n  - source: synthdog_en\n    path: synthdog_en\n"
    )
    entrypoint = f"cd {shlex.quote(str(project))} && {shlex.quote(sys.executable)} -m dataprep.cli build --quiet job.yaml"
    job = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", dashboard, "--", "sh", "-c", entrypoint],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert job.returncode == 0, job.stdout.decode() + job.stderr.decode()
    assert "succeeded" in (job.stdout + job.stderr).decode()

    reference, _ = _content_and_executor(tmp_path / "embedded")
    assert _content_and_executor(tmp_path / "processes") == (reference, "processes")
    assert _content_and_executor(tmp_path / "joined") == (reference, "ray")
    assert _content_and_executor(project / "job-out") == (reference, "ray")
