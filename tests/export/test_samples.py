"""Reading a build for an export: names that could leave the folder, samples outside the contract,
shards or token sidecars unlike the manifest, and repeats that are not copies, each stop the export
with one line and exit 1 (the build is not as its manifest says)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dataprep.cli import main
from dataprep.contract.manifest import load_manifest
from dataprep.contract.shards import iter_tar
from dataprep.files import canonical_json

from helpers.bridge_shards import build_shards, rewrite_shard

KINDS = ["internvl", "llava", "llamafactory", "swift", "parquet"]


def _export(kind: str, manifest_path: Path, out: Path, capsys) -> str:
    """The export's one line of error (its exit status must be 1)."""
    capsys.readouterr()
    assert main(["export", kind, str(manifest_path), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"dataprep export {kind}: error: ") and error.count("\n") == 1
    return error


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("key", "suffix", "source"),
    [
        ("a", "jpg/../../../escaped.jpg", "photos"),
        ("", "/../../escaped.jpg", "photos"),
        ("a", "jpg", "../up"),
    ],
)
def test_names_from_a_shard_cannot_place_files_outside_the_export(
    tmp_path, capsys, kind, key, suffix, source
):
    manifest_path = build_shards(tmp_path / "build", samples=1, per_shard=1)
    turns = [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "a"}]
    record = {
        "source": source,
        "id": "x",
        "images": [suffix],
        "image_sizes": [[1, 1]],
        "conversations": turns,
    }
    rewrite_shard(
        manifest_path,
        0,
        [(f"{key}.json", canonical_json({**record, "meta": {}})), (f"{key}.{suffix}", b"image")],
    )
    assert "cannot name a file or folder" in _export(kind, manifest_path, tmp_path / "export" / "out", capsys)
    assert not list(tmp_path.rglob("escaped*")) and not (tmp_path / "export" / "up").exists()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda name, data: b"{not json" if name == "s000000.json" else data, "JSONDecodeError"),
        (lambda name, data: b"[]" if name == "s000000.json" else data, "is a list, not an object"),
        (lambda name, data: None if name == "s000000.jpg" else data, "members [] are not its images"),
        (lambda name, data: data.replace(b"<image>", b"") if name == "s000000.json" else data, "0 <image>"),
        (lambda name, data: None if name == "s000000.json" else data, "no json member"),
    ],
)
def test_a_sample_outside_the_contract_stops_the_export_in_one_line(tmp_path, capsys, change, problem):
    manifest_path = build_shards(tmp_path / "build", samples=4, per_shard=4)
    shard = load_manifest(manifest_path).shard_paths(manifest_path)[0]
    members = [(name, change(name, data)) for name, data in iter_tar(shard)]
    rewrite_shard(manifest_path, 0, [(name, data) for name, data in members if data is not None])
    error = _export("internvl", manifest_path, tmp_path / "out", capsys)
    assert f"{shard}, sample 0 cannot be exported (" in error and problem in error


def test_a_missing_shard_or_one_short_of_samples_stops_the_export(tmp_path, capsys):
    manifest_path = build_shards(tmp_path / "build", samples=8, per_shard=4)
    shards = load_manifest(manifest_path).shard_paths(manifest_path)
    rewrite_shard(manifest_path, 1, list(iter_tar(shards[1]))[2:])  # one sample fewer
    assert f"{shards[1]}: 3 samples, manifest says 4" in _export(
        "swift", manifest_path, tmp_path / "out", capsys
    )
    shards[1].unlink()
    assert f"{shards[1]}: missing" in _export("swift", manifest_path, tmp_path / "again", capsys)
    assert not (tmp_path / "again").exists()  # checked before anything is written


def test_a_token_sidecar_unlike_the_manifest_stops_the_export(mixture, tmp_path, capsys):
    manifest_path, _, _ = mixture
    build = tmp_path / "build"
    shutil.copytree(manifest_path.parent, build)
    sidecar = build / load_manifest(build / "manifest.json").shards[2].tokens
    sidecar.write_text(sidecar.read_text().replace('"image_tokens":16', '"image_tokens":17'))
    error = _export("internvl", build / "manifest.json", tmp_path / "out", capsys)
    assert f"{sidecar}: missing, or its sha256 differs from the manifest" in error
    assert (
        main(["export", "llava", str(build / "manifest.json"), "--out", str(tmp_path / "llava")]) == 0
    )  # none read


def test_a_repeated_source_whose_samples_are_not_copies_stops_the_internvl_export(tmp_path, capsys):
    manifest_path = build_shards(tmp_path / "build", samples=8, per_shard=4)
    manifest = json.loads(manifest_path.read_text())
    next(source for source in manifest["sources"] if source["name"] == "photos")["repeat"] = 2
    manifest_path.write_text(json.dumps(manifest))
    error = _export("internvl", manifest_path, tmp_path / "out", capsys)
    assert (
        "source photos: 4 samples are not 2 copies of 4 distinct ones, as its `repeat: 2` makes them" in error
    )
