"""The ecosystem's readers, as they are, read every sample of a build with every image and all of
`meta`, whatever kind of sample opens the first shard; the card is deterministic and checked."""

from __future__ import annotations

import glob
import json
import os

import datasets
import pytest
import ray.data
import webdataset as wds
import wids
from PIL import Image

from dataprep.card import CARD, WIDS_INDEX, dataset_card, shard_features
from dataprep.cli import main
from dataprep.contract.manifest import load_manifest

from helpers.sample_kinds import KINDS, build_opening_with, kind_of, shard_samples


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Per opening kind: (output folder, what its shards hold by key)."""
    made = {}
    for kind in KINDS:
        out = build_opening_with(tmp_path_factory.mktemp(kind), kind)
        made[kind] = (out, shard_samples(out))
    return made


def test_each_build_opens_with_its_kind(builds):
    for kind, (_, held) in builds.items():
        first = list(held.values())[:5]
        assert [kind_of(sample["json"]["images"]) for sample in first] == [kind] * 5
        assert {kind_of(sample["json"]["images"]) for sample in held.values()} == set(KINDS)


def _undecoded(ds):
    """The dataset with its image columns as stored bytes."""
    features = datasets.Features(
        {
            name: datasets.Image(decode=False) if isinstance(feature, datasets.Image) else feature
            for name, feature in ds.features.items()
        }
    )
    return ds.cast(features)


def _assert_hf_rows(rows, held):
    """Rows of `datasets`' webdataset builder: one per sample, its json, an image column per suffix."""
    seen = {}
    for row in rows:
        images = {
            name: value["bytes"]
            for name, value in row.items()
            if name not in ("__key__", "json") and value is not None
        }
        seen[row["__key__"]] = {"json": row["json"], "images": images}
    assert len(seen) == len(held) == sum(1 for _ in rows)
    assert seen == held


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streaming", [False, True])
def test_datasets_reads_the_folder_by_its_card(builds, kind, streaming, tmp_path):
    out, held = builds[kind]
    ds = datasets.load_dataset(str(out), split="train", streaming=streaming, cache_dir=str(tmp_path))
    _assert_hf_rows(list(_undecoded(ds)), held)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streaming", [False, True])
def test_datasets_webdataset_builder_with_the_cards_features(builds, kind, streaming, tmp_path):
    out = builds[kind][0]
    ds = datasets.load_dataset(
        "webdataset",
        data_files=f"{out}/shards/*.tar",
        split="train",
        features=datasets.load_dataset_builder(str(out)).info.features,
        streaming=streaming,
        cache_dir=str(tmp_path),
    )
    _assert_hf_rows(list(_undecoded(ds)), builds[kind][1])


def test_the_folder_loads_decoded_images_and_meta(builds, tmp_path):
    out, held = builds["multi"]
    row = next(iter(datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path))))
    sample = held[row["__key__"]]
    assert row["json"]["meta"] == sample["json"]["meta"]
    for suffix, size in zip(sample["json"]["images"], sample["json"]["image_sizes"], strict=True):
        assert isinstance(row[suffix], Image.Image) and list(row[suffix].size) == size


@pytest.mark.parametrize("kind", KINDS)
def test_ray_data_reads_every_sample_with_the_documented_decoder(builds, kind, ray_cluster):
    out, held = builds[kind]
    ds = ray.data.read_webdataset(
        f"{out}/shards",
        file_extensions=["tar"],
        decoder=lambda s: {
            "__key__": s["__key__"],
            "json": s["json"].decode(),
            "images": tuple(s[x] for x in json.loads(s["json"])["images"]),
        },
    )
    rows = ds.take_all()
    seen = {}
    for row in rows:
        sample = json.loads(row["json"])
        seen[row["__key__"]] = {
            "json": sample,
            "images": dict(zip(sample["images"], row["images"], strict=True)),
        }
    assert len(rows) == len(seen) == len(held)
    assert seen == held


@pytest.mark.parametrize("kind", KINDS)
def test_a_webdataset_pipeline_reads_every_image(builds, kind):
    out, held = builds[kind]
    shards = sorted(glob.glob(f"{out}/shards/*.tar"))
    raw = (
        wds.WebDataset(shards, shardshuffle=False)
        .decode()
        .map(lambda s: (s["__key__"], s["json"], [s[x] for x in s["json"]["images"]]))
    )
    seen = {
        key: {"json": sample, "images": dict(zip(sample["images"], images, strict=True))}
        for key, sample, images in raw
    }
    assert seen == held
    decoded = (
        wds.WebDataset(shards, shardshuffle=False)
        .decode("pil")
        .map(lambda s: (s["json"], [s[x] for x in s["json"]["images"]]))
    )
    pairs = list(decoded)
    assert len(pairs) == len(held)
    for sample, images in pairs:
        assert [list(image.size) for image in images] == sample["image_sizes"]


@pytest.mark.parametrize("kind", KINDS)
def test_wids_opens_the_build_by_its_index(builds, kind, tmp_path):
    out, held = builds[kind]
    ds = wids.ShardListDataset(str(out / WIDS_INDEX), cache_dir=str(tmp_path / "raw"), transformations=[])
    seen = {}
    for index in range(len(ds)):
        sample = ds[index]
        record = json.loads(sample[".json"].read())
        seen[sample["__key__"]] = {
            "json": record,
            "images": {s: sample[f".{s}"].read() for s in record["images"]},
        }
    assert len(ds) == len(seen) == len(held)
    assert seen == held
    decoded = wids.ShardListDataset(str(out / WIDS_INDEX), cache_dir=str(tmp_path / "decoded"))
    sample = decoded[0]
    assert sample[".json"] == held[sample["__key__"]]["json"]


def test_the_card_and_index_are_the_same_bytes_in_any_folder_and_a_rerun_rewrites_nothing(tmp_path, builds):
    out = builds["png"][0]
    again = build_opening_with(tmp_path, "png")
    for name in (CARD, WIDS_INDEX):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    stamps = {name: os.stat(again / name).st_mtime_ns for name in (CARD, WIDS_INDEX)}
    build_opening_with(tmp_path, "png")
    assert {name: os.stat(again / name).st_mtime_ns for name in (CARD, WIDS_INDEX)} == stamps
    manifest = load_manifest(again / "manifest.json")
    assert [file.path for file in manifest.reader_files] == [CARD, WIDS_INDEX]


def test_validate_names_an_edited_card(tmp_path, capsys):
    out = build_opening_with(tmp_path, "text")
    assert main(["manifest", "validate", str(out / "manifest.json")]) == 0
    with open(out / CARD, "a") as handle:
        handle.write("edited\n")
    assert main(["manifest", "validate", str(out / "manifest.json")]) == 1
    assert f"{CARD}: missing, or its sha256 differs" in capsys.readouterr().err


def test_the_card_cites_its_sources_and_states_the_strictest_terms(builds):
    manifest = load_manifest(builds["jpg"][0] / "manifest.json")
    source = manifest.sources[0].model_copy(
        update={"citation": "Someone. A Paper. 2024.", "licence": "CC BY-NC 4.0"}
    )
    cited = manifest.model_copy(update={"sources": [source], "strictest_terms": "non-commercial use only"})
    card = dataset_card(cited, "shards/*.tar", shard_features(["jpg"]), "").decode()
    assert "- **mine**: Someone. A Paper. 2024." in card
    assert "**non-commercial use only**" in card
    assert "| mine | `conversations` v2 | 20 | 100.00% | CC BY-NC 4.0 |" in card
    front = card.split("---\n")[1]
    assert "path: shards/*.tar" in front and ".idx.json" not in front
