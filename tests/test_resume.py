"""A build killed with SIGKILL part-way, then re-run, equals an uninterrupted build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dataprep.contract.shards import iter_tar
from dataprep.engine.build import build
from dataprep.engine.settings import BuildSettings
from dataprep.files import sha256_file
from dataprep.recipe.load import load_recipe


def _write_upstream(root: Path, count: int) -> None:
    root.mkdir(parents=True)
    with open(root / "chat.jsonl", "w") as handle:
        for index in range(count):
            turns = [
                {"from": "human", "value": f"question {index}"},
                {"from": "gpt", "value": f"answer {index}"},
            ]
            handle.write(json.dumps({"id": str(index), "conversations": turns}) + "\n")


def _recipe(path: Path, data_root: Path, out: Path) -> Path:
    path.write_text(
        f"name: resumable\nseed: 1\ndata_root: {data_root}\noutput: {{dir: {out}, shard_size: 1}}\n"
        "sources:\n  - source: conversations\n    path: chat\n    file: chat.jsonl\n"
    )
    return path


def _cli(recipe: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "dataprep.cli", "build", str(recipe), "--workers", "1", "--quiet"]
    return subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_sigkill_then_rerun_equals_uninterrupted(ray_cluster, tmp_path):
    data_root = tmp_path / "data"
    _write_upstream(data_root / "chat", 400)
    reference = tmp_path / "reference"
    expected = build(
        load_recipe(_recipe(tmp_path / "a.yaml", data_root, reference)), BuildSettings(out=reference)
    )

    out = tmp_path / "resumed"
    recipe = _recipe(tmp_path / "b.yaml", data_root, out)
    process = _cli(recipe)
    shards = out / "shards"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if shards.exists() and len(list(shards.glob("*.tar"))) >= 5:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the build finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    assert not (out / "manifest.json").exists()
    finished = sorted(shards.glob("*.tar"))
    assert 5 <= len(finished) < len(expected.shards)
    for shard in finished:  # whatever carries a final name is complete and correct
        assert sha256_file(shard) == sha256_file(reference / "shards" / shard.name)
        assert len(list(iter_tar(shard))) == 1

    rerun = _cli(recipe)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output.decode()
    resumed = json.loads((out / "manifest.json").read_text())
    assert resumed["content_sha256"] == expected.content_sha256
    assert [shard["sha256"] for shard in resumed["shards"]] == [shard.sha256 for shard in expected.shards]
    assert not list(shards.glob("*.partial"))
    assert (out / "rejects.jsonl").read_bytes() == (reference / "rejects.jsonl").read_bytes()
