from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from dataprep.contract.sample import Turn, conversation_problem
from dataprep.fixtures import sharegpt4v as fixture
from dataprep.sample import ImageFile, Reject, Sample
from dataprep.sources import registry
from dataprep.sources.sharegpt4v import ANNOTATION_FILES, ShareGPT4V

from helpers.llava_records import engine_rejects
from helpers.records import by_id, read_records, reject_counts, samples_of

MIX = ANNOTATION_FILES["mix665k"]
CHAT = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."}]


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "sharegpt4v"
    return root, fixture.generate(root, seed=0)


@pytest.mark.parametrize("subset", ["cap100k", "mix665k", "captioner1246k"])
def test_counts_per_subset(upstream, subset: str) -> None:
    root, facts = upstream
    expected = facts["subsets"][subset]
    records = read_records(ShareGPT4V, root, subset=subset)
    samples = samples_of(records)
    assert len(samples) == expected["adapter_samples"]
    assert reject_counts(records) == Counter(expected["expected_rejects"])
    assert all(conversation_problem(sample) is None for sample in samples)
    assert all(
        sample.meta["subset"] == subset and sample.meta["file"] == ANNOTATION_FILES[subset]
        for sample in samples
    )
    rejected = engine_rejects(ShareGPT4V(root, ShareGPT4V.Options(subset=subset)), samples)
    assert rejected == Counter(expected["engine_rejects"])
    assert len(samples) - rejected.total() == expected["expected_samples"]


def test_registered() -> None:
    assert registry()["sharegpt4v"] is ShareGPT4V
    assert ShareGPT4V.licence.startswith("CC BY-NC 4.0")


def test_cap100k_placeholder_moves_to_the_front(upstream) -> None:
    root, _ = upstream
    sample = by_id(read_records(ShareGPT4V, root, subset="cap100k"))["000000000009"]
    assert sample.conversations == [
        Turn("human", "<image>\nWhat do you see happening in this image?"),
        Turn(
            "gpt",
            "The image shows a lunch box with four containers: broccoli, bread, a meatball dish and fruit.",
        ),
    ]
    assert sample.images == [ImageFile(root, "coco/train2017/000000000009.jpg")]
    assert sample.meta == {
        "file": ANNOTATION_FILES["cap100k"],
        "index": 0,
        "image": "coco/train2017/000000000009.jpg",
        "subset": "cap100k",
    }


def test_llava_style_refcoco_and_text_only_rows(upstream) -> None:
    root, _ = upstream
    records = by_id(read_records(ShareGPT4V, root, subset="mix665k"))
    assert [turn.value for turn in records["000000033471"].conversations] == [
        "<image>\nWhat are the colors of the bus in the image?",
        "The bus in the image is white and red.",
        "What feature can be seen on the back of the bus?",
        "The back of the bus features an advertisement.",
    ]
    assert [turn.value for turn in records["000000580837"].conversations] == [
        "<image>\nPlease provide the bounding box coordinate of the region this sentence describes: woman in red.",
        "[0.12, 0.34, 0.56, 0.78]",
        "Please provide a short description for this region: [0.21, 0.05, 0.67, 0.99]",
        "Man on the left.",
    ]
    text_only = records["i6IyJda_0"]
    assert text_only.images == []
    assert text_only.meta == {"file": MIX, "index": 2, "subset": "mix665k"}
    assert text_only.conversations[0] == Turn("human", "How do I make a simple tomato sauce?")
    assert records["000000000139"] == Reject(
        "000000000139", "bad_conversation", f"file {MIX}, index 14: the conversation ends with a human turn"
    )


def test_images_come_from_many_image_sets(upstream) -> None:
    root, facts = upstream
    samples = samples_of(read_records(ShareGPT4V, root, subset="mix665k"))
    relpaths = [image.relpath for sample in samples for image in sample.images]
    for folder in (
        "coco/train2017/",
        "sam/images/",
        "gqa/images/",
        "ocr_vqa/images/",
        "textvqa/train_images/",
        "vg/VG_100K/",
        "vg/VG_100K_2/",
        "share_textvqa/images/",
        "web-landmark/images/",
        "wikiart/images/",
        "data/web-celebrity/images/",
    ):
        assert any(relpath.startswith(folder) for relpath in relpaths), folder
    absent = [relpath for relpath in relpaths if not (root / relpath).is_file()]
    assert absent == [facts["missing_image"]] == ["sam/images/sa_23647.jpg"]


def test_missing_sam_image_is_left_to_the_engine(upstream) -> None:
    root, _ = upstream
    sample = by_id(read_records(ShareGPT4V, root, subset="mix665k"))["sa_23647"]
    assert sample.images == [ImageFile(root, "sam/images/sa_23647.jpg")]
    assert (
        sample.conversations[0].value == "<image>\nAnalyze the image in a comprehensive and detailed manner."
    )


def test_web_images_unpacked_under_data_are_found(upstream) -> None:
    root, facts = upstream
    [(recorded, actual)] = facts["fallback_image"].items()
    found = by_id(read_records(ShareGPT4V, root, subset="mix665k"))["Ada_Lovelace_1"]
    assert found.images == [ImageFile(root, actual)]
    assert found.meta["image"] == recorded
    strict = by_id(read_records(ShareGPT4V, root, subset="mix665k", image_fallback_dirs=[]))["Ada_Lovelace_1"]
    assert strict.images == [ImageFile(root, recorded)]
    assert not (root / recorded).exists()


def test_fallback_never_rescues_an_escaping_path(upstream) -> None:
    root, _ = upstream
    source = ShareGPT4V(root, ShareGPT4V.Options(subset="mix665k", image_fallback_dirs=["coco"]))
    assert (root / "coco/../coco/train2017/000000000009.jpg").is_file()
    assert source.image("../coco/train2017/000000000009.jpg") == ImageFile(
        root, "../coco/train2017/000000000009.jpg"
    )


def test_an_image_name_too_long_to_exist_is_left_to_the_engine(tmp_path: Path) -> None:
    name = "x" * 300 + ".jpg"
    record = {"id": "long", "image": name, "conversations": CHAT}
    (tmp_path / ANNOTATION_FILES["cap100k"]).write_text(json.dumps([record]))
    [sample] = read_records(ShareGPT4V, tmp_path, subset="cap100k")
    assert isinstance(sample, Sample)
    assert sample.images == [ImageFile(tmp_path, name)]
    source = ShareGPT4V(tmp_path, ShareGPT4V.Options(subset="cap100k"))
    assert engine_rejects(source, [sample]) == Counter({"image_missing": 1})


def test_an_image_name_with_a_lone_surrogate_is_left_to_the_engine(tmp_path: Path) -> None:
    record = {"id": "lone", "image": "coco/\ud800.jpg", "conversations": CHAT}
    (tmp_path / ANNOTATION_FILES["cap100k"]).write_text(json.dumps([record]))
    [sample] = read_records(ShareGPT4V, tmp_path, subset="cap100k")
    assert sample.images == [ImageFile(tmp_path, "coco/\ud800.jpg")]  # the engine rejects it: bad_text


def test_strided_units_split_a_json_array(upstream) -> None:
    root, _ = upstream
    whole = read_records(ShareGPT4V, root, subset="mix665k")
    source = ShareGPT4V(root, ShareGPT4V.Options(subset="mix665k", unit_bytes=1000))
    units = source.units()
    assert len(units) > 3
    assert units == [f"{MIX}#{k}/{len(units)}" for k in range(len(units))]
    seen = []
    for k, unit in enumerate(units):
        records = list(source.read(unit))
        indexes = [whole.index(record) for record in records]
        assert all(index % len(units) == k for index in indexes)
        seen += indexes
    assert sorted(seen) == list(range(len(whole)))


def test_annotation_dir(upstream, tmp_path: Path) -> None:
    root, facts = upstream
    (root / "annotations").mkdir()
    shutil.move(root / MIX, root / "annotations" / MIX)
    assert ShareGPT4V(root, ShareGPT4V.Options(subset="mix665k")).missing() == [str(root / MIX)]
    records = read_records(ShareGPT4V, root, subset="mix665k", annotation_dir="annotations")
    assert len(samples_of(records)) == facts["adapter_samples"]
    assert records[0].meta["file"] == f"annotations/{MIX}"


def test_options() -> None:
    for bad in ({}, {"subset": "mix666k"}, {"subset": "cap100k", "image_root": "x"}):
        with pytest.raises(ValidationError):
            ShareGPT4V.Options(**bad)
    assert ShareGPT4V.Options(subset="cap100k").image_fallback_dirs == ("data",)
