"""A build to s3:// on a loopback S3 server: killed during its shard stage and resumed, it leaves the
objects of a local build, byte for byte; a re-run uploads nothing, ships no job and reads no object,
and uploads again what was changed in the store; every reader takes the URL; the
shards an earlier plan wrote go, other objects stay; a misspelt or unsupported scheme is refused."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dataprep.cli import main
from dataprep.contract.manifest import load_manifest
from dataprep.contract.store import ObjectPath
from dataprep.engine.build import build
from dataprep.engine.runner import InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.fixtures import generate_all
from dataprep.fixtures.tokenizer import demo_tokenizer
from dataprep.recipe.load import load_recipe

from helpers.loopback_s3 import build_files, objects

REPO = Path(__file__).resolve().parent.parent
BUCKET = "mixtures"
STORE = ObjectPath(f"s3://{BUCKET}/demo")
SHARD_UPLOADED = re.compile(r"(POST \S+/shards/\S+\.tar\?uploadId=\S+|PUT \S+/shards/[^?\s]+\.tar)")


def _recipe(folder: Path, data_root: Path, out: str, shard_size: int) -> Path:
    """The demo recipe over `data_root`, into `out`, with small shards (many of them to cut into)."""
    text = (REPO / "recipes" / "demo.yaml").read_text()
    text = text.replace("data_root: data/demo", f"data_root: {data_root}")
    text = text.replace("dir: out/demo", f"dir: {out}").replace("shard_size: 16", f"shard_size: {shard_size}")
    text = text.replace("tokenizer: data/demo/tokenizer.json", f"tokenizer: {data_root}/tokenizer.json")
    path = folder / f"demo-{shard_size}-{abs(hash(out))}.yaml"
    path.write_text(text)
    return path


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "dataprep.cli", *args]
    return subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )


@dataclass(frozen=True)
class Demo:
    recipe: Path  # the demo recipe (shards of 2 samples) into STORE
    data_root: Path
    work: Path  # the store build's work folder
    reference: Path  # the same recipe built into a local folder
    at_kill: dict[str, bytes]  # the objects in the store when the first build was killed
    recorded_at_kill: list[str]  # the shards whose marker recorded their upload then
    resumed_writes: list[str]  # the write requests of the resumed build


@pytest.fixture(scope="module")
def demo(tmp_path_factory, s3, ray_cluster) -> Demo:
    """The demo fixtures, a local reference build, and a build to s3:// that was SIGKILLed once its
    shard stage had uploaded a few shards, then resumed."""
    root = tmp_path_factory.mktemp("store-demo")
    data_root = root / "data"
    generate_all(data_root)
    demo_tokenizer(data_root)
    reference = root / "reference"
    build(
        load_recipe(_recipe(root, data_root, str(reference), 2)), BuildSettings(out=reference, progress=False)
    )

    s3.create_bucket(BUCKET)
    recipe, work = _recipe(root, data_root, STORE.url, 2), root / "work"
    before = len(s3.writes())
    process = _cli("build", str(recipe), "--work-dir", str(work), "--workers", "2", "--quiet")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if sum(bool(SHARD_UPLOADED.fullmatch(write)) for write in s3.writes()[before:]) >= 3:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the build finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    at_kill = objects(STORE)
    markers = (work / ".work" / "shards").glob("*.tar.json")
    recorded = [m.name.removesuffix(".json") for m in markers if "published" in json.loads(m.read_bytes())]

    before = len(s3.writes())
    rerun = _cli("build", str(recipe), "--work-dir", str(work), "--quiet")
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output.decode()
    assert f"manifest: {STORE.url}/manifest.json" in output.decode()
    return Demo(recipe, data_root, work, reference, at_kill, recorded, s3.writes()[before:])


def test_a_killed_build_to_s3_resumes_to_the_local_build_byte_for_byte(demo):
    at_kill, expected = demo.at_kill, build_files(demo.reference)
    shards = [name for name in expected if name.endswith(".tar")]
    assert "manifest.json" not in at_kill and "rejects.jsonl" not in at_kill
    killed_shards = [name for name in at_kill if name.endswith(".tar")]
    assert 3 <= len(killed_shards) < len(shards)
    for name, data in at_kill.items():  # whatever the store shows is complete and correct
        assert data == expected[name], name
    # a shard whose marker recorded its upload is not uploaded again (one killed between its upload
    # and its marker is, with the same bytes); the third upload came after a worker's first marker
    recorded = [f"shards/{name}" for name in demo.recorded_at_kill]
    assert recorded and set(recorded) <= set(killed_shards)
    assert not any(name in write for name in recorded for write in demo.resumed_writes)

    published = objects(STORE)
    assert sorted(published) == sorted(expected)
    for name, data in expected.items():
        if name != "manifest.json":
            assert published[name] == data, name
    resumed, local = json.loads(published["manifest.json"]), json.loads(expected["manifest.json"])
    assert resumed["content_sha256"] == local["content_sha256"]
    assert resumed["shards"] == local["shards"]
    assert published["manifest.json"] == (demo.work / "manifest.json").read_bytes()


def test_a_rerun_uploads_nothing(demo, s3):
    before, published = len(s3.writes()), objects(STORE)
    settings = BuildSettings(out=demo.work, store=STORE, progress=False)
    build(load_recipe(demo.recipe), settings, InProcessRunner())
    assert s3.writes()[before:] == []
    assert objects(STORE) == published


def test_a_rerun_in_a_fresh_process_ships_no_job_and_reads_no_object(demo, s3):
    """It compares one listing of the store with what the work folder recorded uploading: no job
    shipped (no engine started), no object read (no HEAD or GET of the card, sidecars, manifest)."""
    before = len(s3.requests())
    rerun = _cli("build", str(demo.recipe), "--work-dir", str(demo.work), "--quiet")
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output.decode()
    requests = s3.requests()[before:]
    assert json.loads((demo.work / "manifest.json").read_bytes())["build"]["stages"]["engine_start"] == 0
    assert all(request.split()[0] in ("GET", "HEAD") for request in requests)
    assert not [request for request in requests if request.split()[1].startswith(f"/{BUCKET}/demo/")]
    recursive = [request for request in requests if "list-type=2" in request and "delimiter" not in request]
    assert len(recursive) == 1 and len(requests) <= 5  # the bucket, the prefix (not an object), listings


def test_a_rerun_uploads_again_the_small_objects_changed_or_deleted_in_the_store(demo, s3):
    sidecar = load_manifest(demo.work / "manifest.json").shards[0].tokens
    assert sidecar is not None
    s3.put(f"{BUCKET}/demo/README.md", b"an edited card")
    s3.delete(f"{BUCKET}/demo/{sidecar}")
    before = len(s3.writes())
    build(
        load_recipe(demo.recipe), BuildSettings(out=demo.work, store=STORE, progress=False), InProcessRunner()
    )
    assert s3.uploads(before, f"{BUCKET}/demo") == {"README.md", sidecar, "manifest.json"}
    assert objects(STORE) == build_files(demo.work)


def test_readers_take_the_manifest_by_url(demo, capsys, tmp_path):
    url = f"{STORE.url}/manifest.json"
    assert main(["manifest", "show", url]) == 0
    assert "total" in capsys.readouterr().out
    assert main(["manifest", "validate", url]) == 0
    shards = len(load_manifest(url).shards)
    assert f"{shards} of {shards} shards verified; all good" in capsys.readouterr().out
    assert main(["inspect", url, "-n", "2", "--images", str(tmp_path / "seen")]) == 0
    assert capsys.readouterr().out.count("source=") == 2
    assert main(["manifest", "diff", url, str(demo.reference / "manifest.json")]) == 0
    capsys.readouterr()
    for kind in ("llava", "parquet"):  # exports read the shards from the store, as from the local build
        assert main(["export", kind, url, "--out", str(tmp_path / kind)]) == 0
        local = tmp_path / f"{kind}-local"
        assert main(["export", kind, str(demo.reference / "manifest.json"), "--out", str(local)]) == 0
        data = sorted(
            p.relative_to(local) for p in local.rglob("*") if p.is_file() and p.name != "export.json"
        )
        assert data and all(
            (tmp_path / kind / name).read_bytes() == (local / name).read_bytes() for name in data
        )
    assert main(["report", url, "--out", str(tmp_path / "report.html")]) == 0
    assert main(["report", str(demo.reference / "manifest.json"), "--out", str(tmp_path / "local.html")]) == 0
    assert (tmp_path / "report.html").read_bytes() == (tmp_path / "local.html").read_bytes()


def test_validate_names_what_differs_in_the_store(demo, s3, capsys):
    first = load_manifest(f"{STORE.url}/manifest.json").shards[0].path
    original = (STORE / first).read_bytes()
    s3.put(f"{BUCKET}/demo/shards/notes.tar", b"not a shard")
    s3.put(f"{BUCKET}/demo/{first}", original[:-1] + b"x")
    try:
        assert main(["manifest", "validate", f"{STORE.url}/manifest.json"]) == 1
        errors = capsys.readouterr().err
        assert "shards/notes.tar: not in the manifest" in errors
        assert f"{first}: size or sha256 differs from the manifest" in errors
    finally:
        s3.delete(f"{BUCKET}/demo/shards/notes.tar")
        s3.put(f"{BUCKET}/demo/{first}", original)


def test_the_bridge_trains_from_the_store(demo, tmp_path):
    pytest.importorskip("torch")
    from train_bridge.train import train

    from helpers.bridge_shards import train_tokenizer
    from helpers.training import config

    train_tokenizer(tmp_path / "tokenizer")
    records = train(
        config(f"{STORE.url}/manifest.json", tmp_path / "tokenizer", tmp_path / "run", max_steps=2)
    )
    assert [record["step"] for record in records] == [1, 2]
    assert all(record["loss"] > 0 for record in records)


def test_a_new_plan_removes_the_shards_a_build_wrote_and_nothing_else(demo, s3, tmp_path):
    s3.put(f"{BUCKET}/demo/shards/mine.txt", b"kept")
    replanned = load_recipe(_recipe(tmp_path, demo.data_root, STORE.url, 3))
    settings = BuildSettings(out=demo.work, store=STORE, progress=False)
    manifest = build(replanned, settings, InProcessRunner())
    published = objects(STORE)
    assert published.pop("shards/mine.txt") == b"kept"
    assert published == build_files(demo.work)
    assert len([name for name in published if name.endswith(".tar")]) == len(manifest.shards)


def test_a_prefix_of_foreign_objects_or_no_bucket_is_refused(demo, s3, tmp_path, capsys):
    recipe = demo.recipe
    s3.put(f"{BUCKET}/theirs/notes.txt", b"theirs")
    assert (
        main(["build", str(recipe), "--out", f"s3://{BUCKET}/theirs", "--work-dir", str(tmp_path / "w")]) == 1
    )
    assert "holds objects but no dataprep build" in capsys.readouterr().err
    assert ObjectPath(f"s3://{BUCKET}/theirs/notes.txt").read_bytes() == b"theirs"
    assert (
        main(["build", str(recipe), "--out", "s3://no-such-bucket/x", "--work-dir", str(tmp_path / "v")]) == 1
    )
    assert "bucket s3://no-such-bucket not found" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["s4://bucket/x", "http://example.org/x", "s3:/bucket/x"])
def test_an_unsupported_or_misspelt_scheme_is_a_usage_error(demo, out, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["build", str(demo.recipe), "--out", out]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and out in error
    assert list(tmp_path.iterdir()) == []  # no local folder named after the URL
    recipe = tmp_path.parent / f"{tmp_path.name}.yaml"
    recipe.write_text(demo.recipe.read_text().replace(STORE.url, out))
    assert main(["build", str(recipe)]) == 2
    assert "output.dir" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(["manifest", "show", out.replace("/x", "/manifest.json")]) == 2
