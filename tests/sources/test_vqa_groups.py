from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from dataprep.contract.sample import Turn
from dataprep.sample import Reject
from dataprep.sources._vqa_groups import (
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
