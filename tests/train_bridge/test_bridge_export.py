"""export-internvl: the official layout, read back through the `conversations` adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataprep.contract.manifest import load_manifest
from dataprep.contract.shards import iter_samples, iter_tar
from dataprep.files import canonical_json
from train_bridge.cli import main
from train_bridge.errors import BridgeError
from train_bridge.export_internvl import export

from helpers.bridge_shards import build_shards, rewrite_shard


def test_export_round_trips_through_the_conversations_adapter(
    tmp_path: Path, manifest_path: Path, capsys
) -> None:
    from dataprep.sample import ImageFile
    from dataprep.sources.conversations import Conversations, ConversationsOptions

    out = tmp_path / "internvl"
    assert main(["export-internvl", "--manifest", str(manifest_path), "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert json.loads(capsys.readouterr().out) == meta
    manifest = load_manifest(manifest_path)
    originals = {}
    for path in manifest.shard_paths(manifest_path):
        for key, record, blobs in iter_samples(path):
            originals.setdefault(record.source, []).append((key, record.to_json(), blobs))
    assert set(meta) == {"charts", "photos", "text"}
    for source, entry in meta.items():
        assert entry["data_augment"] is False and entry["repeat_time"] == 1
        assert entry["length"] == len(originals[source]) and entry["annotation"].endswith(".jsonl")
        adapter = Conversations(Path(entry["root"]), ConversationsOptions(file=entry["annotation"]))
        samples = [s for unit in adapter.units() for s in adapter.read(unit)]
        assert len(samples) == len(originals[source])
        for sample, (_key, record, blobs) in zip(samples, originals[source], strict=True):
            assert sample.id == record["id"]
            assert [t.to_json() for t in sample.conversations] == record["conversations"]
            files = [image for image in sample.images if isinstance(image, ImageFile)]
            assert len(files) == len(sample.images) == len(record["images"])
            assert [(f.root / f.relpath).read_bytes() for f in files] == [blobs[s] for s in record["images"]]
    line = json.loads(Path(meta["photos"]["annotation"]).read_text().splitlines()[0])
    assert {"id", "image", "width", "height", "conversations"} <= set(line)


def test_a_single_image_placeholder_moves_to_the_first_turn_as_the_official_trainer_expects() -> None:
    from train_bridge.export_internvl import internvl_record

    later = {
        "id": "x",
        "images": ["jpg"],
        "image_sizes": [[4, 3]],
        "conversations": [
            {"from": "human", "value": "Hello."},
            {"from": "gpt", "value": "Hi."},
            {"from": "human", "value": "<image>\nWhat is this?"},
            {"from": "gpt", "value": "A cat."},
        ],
    }
    line = internvl_record("k", later)
    assert [turn["value"] for turn in line["conversations"]] == [
        "<image>\nHello.",
        "Hi.",
        "What is this?",
        "A cat.",
    ]
    assert later["conversations"][2]["value"] == "<image>\nWhat is this?"  # the record is not altered
    first = {
        **later,
        "conversations": [{"from": "human", "value": "Look <image> here"}, later["conversations"][1]],
    }
    assert internvl_record("k", first)["conversations"] == first["conversations"]
    several = {**later, "images": ["jpg", "1.jpg"], "image_sizes": [[4, 3], [4, 3]]}
    assert internvl_record("k", several)["conversations"] == later["conversations"]


@pytest.mark.parametrize(
    ("key", "suffix"), [("a", "jpg/../../../escaped.jpg"), ("", "/../../escaped.jpg"), ("a", "..")]
)
def test_names_from_a_shard_cannot_place_files_outside_the_export(
    tmp_path: Path, key: str, suffix: str
) -> None:
    manifest_path = build_shards(tmp_path / "build", samples=1, per_shard=1)
    turns = [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "a"}]
    record = {
        "source": "photos",
        "id": "x",
        "images": [suffix],
        "image_sizes": [[1, 1]],
        "conversations": turns,
        "meta": {},
    }
    rewrite_shard(manifest_path, 0, [(f"{key}.json", canonical_json(record)), (f"{key}.{suffix}", b"image")])
    out = tmp_path / "export" / "out"
    with pytest.raises(BridgeError, match="cannot name a file or folder"):
        export(manifest_path, out)
    assert not [path for path in tmp_path.rglob("escaped*")]


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
def test_a_sample_outside_the_contract_stops_the_export_in_one_line(
    tmp_path: Path, capsys, change, problem: str
) -> None:
    manifest_path = build_shards(tmp_path / "build", samples=4, per_shard=4)
    shard = load_manifest(manifest_path).shard_paths(manifest_path)[0]
    members = [(name, change(name, data)) for name, data in iter_tar(shard)]
    rewrite_shard(manifest_path, 0, [(name, data) for name, data in members if data is not None])
    assert main(["export-internvl", "--manifest", str(manifest_path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{shard}, sample 0 cannot be exported (" in error and problem in error


def test_a_missing_shard_or_one_short_of_samples_stops_the_export(tmp_path: Path) -> None:
    manifest_path = build_shards(tmp_path / "build", samples=8, per_shard=4)
    shards = load_manifest(manifest_path).shard_paths(manifest_path)
    rewrite_shard(manifest_path, 1, list(iter_tar(shards[1]))[2:])  # one sample fewer
    with pytest.raises(BridgeError, match=f"{shards[1]}: 3 samples, manifest says 4"):
        export(manifest_path, tmp_path / "out")
    shards[1].unlink()
    with pytest.raises(BridgeError, match=f"{shards[1]}: missing"):
        export(manifest_path, tmp_path / "again")
    assert not (tmp_path / "again").exists()  # checked before anything is written
