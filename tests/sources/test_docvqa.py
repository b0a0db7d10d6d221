from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from dataprep.fixtures import docvqa as fixture
from dataprep.sample import ImageFile
from dataprep.sources import registry
from dataprep.sources.docvqa import DocVQA

from helpers.vqa_groups import expected_pairs, pairs, read_all


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "docvqa"
    return root, fixture.generate(root, seed=0)


def source(root: Path, **options) -> DocVQA:
    return DocVQA(root=root, options=DocVQA.Options(**options))


def test_registered() -> None:
    assert registry()["docvqa"] is DocVQA
    assert "UCSF" in DocVQA.licence


def test_one_conversation_per_page(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    read = read_all(source(root))
    assert len(read.samples) == facts["adapter_samples"] == 4
    assert set(read.samples) == set(facts["pages"])
    assert read.reasons == facts["expected_rejects"]
    for page, items in facts["pages"].items():
        sample = read.samples[page]
        questions = [item["question"] for item in items]
        assert pairs(sample) == expected_pairs(questions, [item["answers"][0] for item in items])
        assert sample.meta["question_ids"] == [item["questionId"] for item in items]
        assert sample.meta["answers"] == [item["answers"] for item in items]
        assert sample.meta["question_types"] == [item["question_types"] for item in items]
        assert sample.meta["doc_id"] == items[0]["docId"]
        assert sample.meta["ucsf_document_id"] == items[0]["ucsf_document_id"]
        assert sample.meta["ucsf_document_page_no"] == items[0]["ucsf_document_page_no"]
        assert sample.meta["split"] == "train"
        assert sample.meta["file"] == "train/train_v1.0_withQT.json"
        assert sample.images == [ImageFile(root, f"train/{page}")]


def test_turns_in_question_id_order_first_answer_as_reply(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    letter = read_all(source(root)).samples["documents/xnbl0037_1.png"]
    assert letter.meta["question_ids"] == [336, 337, 338]  # 336 comes last in the file
    assert pairs(letter) == [
        (
            "<image>\nwhat is the subject of the letter?\nAnswer the question using a single word or phrase.",
            "Tobacco research",
        ),
        (
            "what is the date mentioned in this letter?\nAnswer the question using a single word or phrase.",
            "1/8/93",
        ),
        ("to whom is this letter addressed?\nAnswer the question using a single word or phrase.", "Dr. Lee"),
    ]
    assert letter.meta["answers"][2] == ["Dr. Lee", "dr. lee"]
    assert letter.meta["question_types"][1] == ["handwritten", "form"]


def test_rejects(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    read = read_all(source(root))
    assert {(reject.id, reject.reason) for reject in read.rejects} == {
        ("49154", "no_answer"),
        ("49155", "bad_answer"),
    }
    invoice = read.samples["documents/ffbf0023_4.png"]
    assert invoice.meta["question_ids"] == [49153]
    assert pairs(invoice)[0][1] == "$ 2,400.00"


def test_missing_page_image_left_to_the_engine(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    samples = read_all(source(root)).samples
    missing = facts["missing_image"]
    assert samples[missing].images == [ImageFile(root, f"train/{missing}")]
    present = [page for page in samples if (root / "train" / page).exists()]
    assert len(present) == facts["expected_samples"]
    assert (root / "train/ocr_results/xnbl0037_1.json").exists()


def test_annotation_without_question_types(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    plain = source(root, annotation="train/train_v1.0.json")
    assert plain.inputs() == [root / "train/train_v1.0.json"]
    samples = read_all(plain).samples
    assert set(samples) == set(facts["pages"])
    letter = samples["documents/xnbl0037_1.png"]
    assert letter.meta["question_types"] == [None, None, None]
    assert letter.meta["file"] == "train/train_v1.0.json"
    (root / "train/train_v1.0_withQT.json").unlink()
    assert source(root).inputs() == [root / "train/train_v1.0.json"]


def test_val_and_test_splits(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    val = read_all(source(root, split="val"))
    assert len(val.samples) == facts["splits"]["val"]["expected_samples"]
    page = val.samples["documents/nkbl0226_1.png"]
    assert page.images == [ImageFile(root, "val/documents/nkbl0226_1.png")]
    assert page.meta["file"] == "val/val_v1.0.json"
    assert page.meta["answers"] == [["ITC Limited", "itc limited"], ["1995"]]
    test = read_all(source(root, split="test"))
    assert test.samples == {}
    assert test.reasons == facts["splits"]["test"]["expected_rejects"]
    assert "answers" not in json.loads((root / "test/test_v1.0.json").read_text())["data"][0]


def test_images_option_and_partitions(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    (root / "train").rename(root / "spdocvqa")
    moved = source(root, annotation="spdocvqa/train_v1.0_withQT.json", images="spdocvqa", partitions=1)
    assert moved.units() == ["part-00000-of-00001"]
    samples = read_all(moved).samples
    assert set(samples) == set(facts["pages"])
    assert samples["documents/xnbl0037_1.png"].images == [
        ImageFile(root, "spdocvqa/documents/xnbl0037_1.png")
    ]


def test_options_are_checked() -> None:
    with pytest.raises(ValidationError):
        DocVQA.Options(split="dev")
    with pytest.raises(ValidationError):
        DocVQA.Options(annotations="x.json")
