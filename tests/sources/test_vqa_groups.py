from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from dataprep.contract.sample import Turn
from dataprep.sample import Reject
from dataprep.sources import registry
from dataprep.sources._vqa_groups import (
    GroupedVQASource,
    Question,
    answer_text,
    build_question,
    partition_filter,
    partition_index,
    partition_of,
    partition_units,
    short_answer_turns,
    stream_json,
)
from dataprep.sources.base import MAX_PARSING_UNITS
from dataprep.sources.dvqa import DVQA


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("pair", "pair"),
        ("[63, 26]", "[63, 26]"),
        (7, "7"),
        (Decimal("1.50"), "1.50"),
        (Decimal("1.634722222"), "1.634722222"),
        (Decimal("1E+2"), None),
        (True, None),
        (1.5, None),
        (None, None),
        (["a"], None),
    ],
)
def test_answer_text_is_lossless_or_none(value: object, text: str | None) -> None:
    assert answer_text(value) == text


def test_build_question_checks_the_pair() -> None:
    question = build_question("1", "Q?", Decimal("0.5"), (1,), {"boxes": [Decimal("1.25")]})
    assert question == Question("Q?", "0.5", (1,), {"boxes": [1.25]}, {})
    assert build_question("2", "", "a", (2,)) == Reject("2", "bad_record", "question is ''")
    assert build_question("3", "Q?", None, (3,)).reason == "no_answer"
    assert build_question("4", "Q?", "  ", (4,)).reason == "no_answer"
    assert build_question("5", "Q?", False, (5,)).reason == "bad_answer"
    assert build_question("6", "Look at <image>", "a", (6,)).reason == "placeholder_in_text"
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    assert build_question("7", "Q?", "a", (7,), {"bbox": nested}) == Reject(
        "7", "bad_record", "a field is nested too deeply"
    )


def test_short_answer_turns() -> None:
    questions = [Question("A?", "1", (0,)), Question("B?", "2", (1,))]
    assert short_answer_turns(questions, "!") == [
        Turn("human", "<image>\nA?!"),
        Turn("gpt", "1"),
        Turn("human", "B?!"),
        Turn("gpt", "2"),
    ]


def test_partitions() -> None:
    assert partition_units(2) == ["part-00000-of-00002", "part-00001-of-00002"]
    assert partition_index("part-00001-of-00002", 2) == 1
    with pytest.raises(ValueError, match="unknown unit"):
        partition_index("part-00002-of-00002", 2)
    assert partition_of(None, 5) == 0
    assert partition_of("bar_train_00000001.png", 7) == partition_of("bar_train_00000001.png", 7)
    spread = {partition_of(f"documents/page_{index}.png", 4) for index in range(40)}
    assert spread == {0, 1, 2, 3}
    keys = [None, "a.png", "a.png", "b.png", None, "c.png"]
    for index in range(3):
        wanted = partition_filter(index, 3)
        assert [wanted(key) for key in keys] == [partition_of(key, 3) == index for key in keys]


def test_stream_json(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"data": [{"x": 1.50}, {"x": 2}]}')
    assert list(stream_json(path, "data.item")) == [{"x": Decimal("1.50")}, {"x": 2}]
    path.write_text('{"data": []}')
    assert list(stream_json(path, "data.item")) == []
    path.write_text('{"rows": []}')
    with pytest.raises(ValueError, match="expected a JSON array at 'data'"):
        list(stream_json(path, "data.item"))
    path.write_text("[1, ")
    with pytest.raises(ValueError, match="not valid JSON"):
        list(stream_json(path, "item"))


def test_stream_json_keeps_text_and_numbers_exact(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_bytes(rb'[{"q": "a\ud800", "n": 123456789012345678901234, "x": 1e400}, {"q": "\ud83d\ude00"}]')
    assert list(stream_json(path, "item")) == [
        {"q": "a\ud800", "n": 123456789012345678901234, "x": Decimal("1E+400")},
        {"q": "\U0001f600"},
    ]
    path.write_bytes(b'[{"q": "\xed\xa0\x80"}]')  # a surrogate encoded as UTF-8 bytes: not UTF-8
    with pytest.raises(ValueError, match=r"q\.json"):
        list(stream_json(path, "item"))


def scaled_up(root: Path, name: str, questions: int, images: int) -> GroupedVQASource:
    """A grouped source over `questions` generated questions (of `images` images, interleaved, so
    an image's questions are far apart) in its published layout; no image files."""

    def record(index: int) -> dict:
        image = f"img_{index % images:06d}.png"
        if name == "chartqa":
            return {"imgname": image, "query": f"q{index}?", "label": "1"}
        if name == "docvqa":
            return {"questionId": index, "question": f"q{index}?", "image": image, "answers": ["1"]}
        return {"question_id": index, "question": f"q{index}?", "answer": "1", "image": image}

    records = [record(index) for index in range(questions)]
    if name == "chartqa":
        folder = root / "ChartQA Dataset" / "train"
        folder.mkdir(parents=True)
        (folder / "train_human.json").write_text(json.dumps(records[: questions // 4]))
        (folder / "train_augmented.json").write_text(json.dumps(records[questions // 4 :], indent="\t"))
    elif name == "docvqa":
        (root / "train").mkdir(parents=True)
        (root / "train" / "train_v1.0.json").write_text(
            json.dumps({"dataset_name": "docvqa", "data": records})
        )
    else:
        root.mkdir(parents=True)
        (root / "train_qa.json").write_text(json.dumps(records))
    source_class = registry()[name]
    return source_class(root, source_class.Options())


@pytest.mark.parametrize("name", ["chartqa", "docvqa", "dvqa"])
def test_partitions_are_sized_by_questions_and_cover_each_question_once(tmp_path: Path, name: str) -> None:
    source = scaled_up(tmp_path / name, name, 17_000, 5_000)  # ~1 MiB: the count is estimated
    units = source.units()
    assert len(units) == MAX_PARSING_UNITS  # ~68 units of 250 questions, at most 64
    runs = [list(source.read(unit)) for unit in units]
    turns = [turn.value for run in runs for sample in run for turn in sample.conversations[::2]]
    questions = sorted(int(text.removeprefix("<image>\n").split("?")[0][1:]) for text in turns)
    assert questions == list(range(17_000))  # every question once
    assert sorted(sample.id for run in runs for sample in run) == [f"img_{i:06d}.png" for i in range(5_000)]
    again = type(source)(source.root, source.options)  # another worker, units in another order
    assert [list(again.read(unit)) for unit in units[:3][::-1]] == runs[:3][::-1]


@pytest.mark.parametrize(
    ("questions", "unit_questions", "partitions", "count"),
    [(1_000, 250, None, 4), (1_000, 100, None, 10), (1_000, 250, 3, 3), (10, 250, None, 1)],
)
def test_partition_count_options(
    tmp_path: Path, questions: int, unit_questions: int, partitions: int | None, count: int
) -> None:
    source = scaled_up(tmp_path / "dvqa", "dvqa", questions, 100)  # under 1 MiB: the count is exact
    sized = DVQA(source.root, DVQA.Options(unit_questions=unit_questions, partitions=partitions))
    assert sized.units() == partition_units(count)
    assert source.options.partitions is None
    with pytest.raises(ValueError, match="unknown unit"):
        list(sized.read(partition_units(count + 1)[0]))
    for bad in ({"unit_questions": 0}, {"partitions": 0}, {"unit_questions": "10"}):
        with pytest.raises(ValidationError):
            DVQA.Options(**bad)
