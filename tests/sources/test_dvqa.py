from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from dataprep.fixtures import dvqa as fixture
from dataprep.sample import ImageFile, Reject
from dataprep.sources import registry
from dataprep.sources._vqa_groups import Question, partition_of
from dataprep.sources.dvqa import DVQA

from helpers.vqa_groups import SUFFIX, expected_pairs, pairs, read_all


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "dvqa"
    return root, fixture.generate(root, seed=0)


def source(root: Path, **options) -> DVQA:
    return DVQA(root=root, options=DVQA.Options(**options))


def test_registered() -> None:
    assert registry()["dvqa"] is DVQA
    assert DVQA.licence == "CC BY-NC 4.0"
    assert DVQA.version == "3"


def test_one_conversation_per_image_with_questions(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    read = read_all(source(root))
    assert len(read.samples) == facts["adapter_samples"]
    assert set(read.samples) == set(facts["conversations"])
    assert facts["unasked_image"] not in read.samples
    assert read.reasons == facts["expected_rejects"]
    for image, conversation in facts["conversations"].items():
        questions, answers = zip(*conversation, strict=True)
        assert pairs(read.samples[image]) == expected_pairs(list(questions), list(answers))


def test_turns_ordered_by_question_id_and_meta_aligned(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    samples = read_all(source(root)).samples
    chart = samples["bar_train_00000001.png"]  # its questions are in descending id order in the file
    assert chart.meta["question_ids"] == [2000, 2001, 2002]
    assert chart.meta["template_ids"] == ["structure", "data", "reasoning"]
    assert chart.conversations[0].value == "<image>\nHow many bars are there?" + SUFFIX
    assert chart.conversations[2].value.startswith("What is the value of ")
    assert chart.conversations[4].value == "Which bar has the largest value?" + SUFFIX
    first = samples["bar_train_00000000.png"]  # its last question is at the end of the file
    assert first.meta["question_ids"] == [1000, 1001, 1002]
    for image, sample in samples.items():
        assert sample.meta["question_ids"] == facts["question_ids"][image]
        assert sample.meta["template_ids"] == facts["template_ids"][image]
        assert sample.meta["answer_bboxes"] == facts["answer_bboxes"][image]
        assert sample.meta["split"] == "train"
        assert sample.meta["file"] == "train_qa.json"
        assert sample.images == [ImageFile(root, f"images/{image}")]
    assert chart.meta["answer_bboxes"][0] == []
    assert chart.meta["answer_bboxes"][1] == [10.0, 100.5, 30.0, 12.0]
    json.dumps(chart.meta)  # the meta is plain JSON (no Decimal)


def test_integer_answer_kept_as_its_text_and_boolean_rejected(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    qa = json.loads((root / "train_qa.json").read_text())
    integer = next(q for q in qa if isinstance(q["answer"], int) and not isinstance(q["answer"], bool))
    read = read_all(source(root))
    sample = read.samples[integer["image"]]
    turn = sample.meta["question_ids"].index(integer["question_id"])
    assert pairs(sample)[turn][1] == str(integer["answer"])
    rejects = {reject.id: reject for reject in read.rejects}
    assert rejects["3100"].reason == "bad_answer"
    assert rejects["3101"].reason == "bad_record"
    assert 3100 not in sample.meta["question_ids"]


def test_missing_image_left_to_the_engine(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    sample = read_all(source(root)).samples[facts["missing_image"]]
    assert sample.images == [ImageFile(root, f"images/{facts['missing_image']}")]
    assert not (root / "images" / facts["missing_image"]).exists()
    assert (root / "images" / facts["unasked_image"]).exists()
    others = [image for image in facts["conversations"] if image != facts["missing_image"]]
    assert all((root / "images" / image).exists() for image in others)
    assert len(others) == facts["expected_samples"]


@pytest.mark.parametrize("partitions", [1, 3, 32])
def test_partitions_cover_every_image_once(upstream: tuple[Path, dict], partitions: int) -> None:
    root, facts = upstream
    dvqa = source(root, partitions=partitions)
    assert len(dvqa.units()) == partitions
    read = read_all(dvqa)
    assert set(read.samples) == set(facts["conversations"])
    assert read.reasons == facts["expected_rejects"]
    reference = read_all(source(root, partitions=1)).samples
    assert {k: v.conversations for k, v in read.samples.items()} == {
        k: v.conversations for k, v in reference.items()
    }


def test_a_unit_builds_only_its_own_questions(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    built: list[str] = []

    class Counting(DVQA):
        @staticmethod
        def question(question_id: int, record: dict) -> Question | Reject:
            built.append(record["image"])
            return DVQA.question(question_id, record)

    dvqa = Counting(root, DVQA.Options(partitions=3))
    per_unit = []
    for index, unit in enumerate(dvqa.units()):
        built.clear()
        list(dvqa.read(unit))
        assert all(partition_of(image, 3) == index for image in built)
        per_unit.append(len(built))
    records = json.loads((root / "train_qa.json").read_text())
    assert sum(per_unit) == sum(isinstance(record.get("question_id"), int) for record in records)


def test_read_is_deterministic(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    dvqa = source(root, partitions=2)
    assert [list(dvqa.read(unit)) for unit in dvqa.units()] == [
        list(dvqa.read(unit)) for unit in dvqa.units()
    ]


def test_prompt_suffix_option(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    sample = read_all(source(root, prompt={"suffix": ""})).samples["bar_train_00000001.png"]
    assert sample.conversations[0].value == "<image>\nHow many bars are there?"
    assert sample.conversations[4].value == "Which bar has the largest value?"


@pytest.mark.parametrize("split", ["val_easy", "val_hard"])
def test_other_splits(upstream: tuple[Path, dict], split: str) -> None:
    root, facts = upstream
    samples = read_all(source(root, split=split)).samples
    assert len(samples) == facts["splits"][split]["expected_samples"]
    assert all(image.startswith(f"bar_{split}_") for image in samples)
    assert {sample.meta["file"] for sample in samples.values()} == {f"{split}_qa.json"}
    assert {sample.meta["split"] for sample in samples.values()} == {split}


def test_qa_file_override(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    (root / "qa").mkdir()
    (root / "val_hard_qa.json").rename(root / "qa" / "hard.json")
    dvqa = source(root, split="val_hard", qa_file="qa/hard.json")
    assert dvqa.missing() == []
    samples = read_all(dvqa).samples
    assert list(samples) == ["bar_val_hard_00000000.png"]
    assert samples["bar_val_hard_00000000.png"].meta["file"] == "qa/hard.json"
    assert source(root, split="val_hard").missing() == [str(root / "val_hard_qa.json")]


def test_missing_or_malformed_qa_file_is_an_error(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    (root / "train_qa.json").write_text('{"questions": []}')
    with pytest.raises(ValueError, match="expected a JSON array"):
        list(source(root, partitions=32).read("part-00000-of-00032"))
    (root / "train_qa.json").write_text('[{"question": ')
    with pytest.raises(ValueError, match="not valid JSON"):
        list(source(root, partitions=32).read("part-00000-of-00032"))
    (root / "train_qa.json").unlink()
    with pytest.raises(FileNotFoundError):
        list(source(root, partitions=32).read("part-00000-of-00032"))


def test_options_are_checked(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    with pytest.raises(ValidationError):
        DVQA.Options(split="test")
    with pytest.raises(ValidationError):
        DVQA.Options(partitions=0)
    with pytest.raises(ValidationError):
        DVQA.Options(colour="red")
    with pytest.raises(ValueError, match="unknown unit"):
        list(source(root).read("part-00000-of-00004"))
