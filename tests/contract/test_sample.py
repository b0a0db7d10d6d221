"""The shard sample: one parse-and-check of a sample json, and the conversation rules."""

from __future__ import annotations

import pytest

from dataprep.contract.sample import (
    SampleError,
    ShardSample,
    Turn,
    conversation_problem,
    parse_sample,
    placeholder_first,
    turn_order_problem,
    without_placeholder,
)
from dataprep.files import canonical_json
from dataprep.sample import ImageBytes, Sample

GOOD = {
    "source": "chartqa",
    "id": "q1",
    "images": ["jpg"],
    "image_sizes": [[4, 3]],
    "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}],
    "meta": {"split": "train"},
}


def test_a_sample_json_round_trips_to_the_same_bytes():
    sample = parse_sample(GOOD)
    assert sample == ShardSample(
        "chartqa",
        "q1",
        ["jpg"],
        [[4, 3]],
        [Turn("human", "<image>\nq"), Turn("gpt", "a")],
        {"split": "train"},
    )
    assert sample.to_json() == GOOD and sample.to_bytes() == canonical_json(GOOD)
    assert parse_sample({**GOOD, "extra": 1}) == sample  # readers rely on the contract's fields only


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ([GOOD], "is a list, not an object"),
        ({"source": "chartqa", "images": ["jpg"]}, "`conversations` is not a list"),
        ({key: value for key, value in GOOD.items() if key != "source"}, "`source` is not a text"),
        ({**GOOD, "images": "jpg"}, "`images` is not a list"),
        ({**GOOD, "conversations": [{"from": "human", "value": 5}]}, "`conversations` is not a list"),
        ({**GOOD, "conversations": GOOD["conversations"][::-1]}, "turn 0 is from 'gpt'"),
        ({**GOOD, "conversations": GOOD["conversations"][:1]}, "ends with a human turn"),
        ({**GOOD, "conversations": []}, "no turns"),
        (
            {**GOOD, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "<image>"}]},
            "<image> placeholder in a gpt turn",
        ),
        ({**GOOD, "images": [], "image_sizes": []}, "1 <image> placeholders for 0 images"),
        ({**GOOD, "images": ["0.jpg", "1.jpg"]}, "1 <image> placeholders for 2 images"),
        ({key: value for key, value in GOOD.items() if key != "id"}, "`id` is not a text"),
        ({**GOOD, "image_sizes": [[4, 3.5]]}, r"`image_sizes` is not a list of \[width, height\] pairs"),
        ({**GOOD, "image_sizes": [[True, 3]]}, r"`image_sizes` is not a list"),
        ({**GOOD, "image_sizes": []}, "0 image sizes for 1 images"),
        ({**GOOD, "meta": []}, "`meta` is not an object"),
    ],
)
def test_a_sample_json_outside_the_contract_is_refused(record, problem: str) -> None:
    with pytest.raises(SampleError, match=problem):
        parse_sample(record)


def test_the_same_rules_hold_an_adapters_sample_and_a_typed_one():
    turns = [Turn("human", "<image>"), Turn("gpt", "a")]
    assert conversation_problem(Sample("x", turns, [ImageBytes(b"")])) is None
    assert conversation_problem(Sample("x", turns)) == "1 <image> placeholders for 0 images"
    with pytest.raises(SampleError, match="1 <image> placeholders for 0 images"):
        ShardSample("s", "x", [], [], turns)
    assert turn_order_problem(["human", "gpt", "gpt"]) == "turn 2 is from 'gpt', expected 'human'"


def test_without_placeholder_takes_one_newline_beside_it() -> None:
    assert without_placeholder("What do you see?\n<image>") == "What do you see?"
    assert without_placeholder("<image>\nWhat do you see?") == "What do you see?"
    assert without_placeholder("Look\n<image>\nthen answer") == "Look\nthen answer"
    assert without_placeholder("Look <image> here") == "Look  here"


def test_placeholder_first_moves_the_one_image_to_the_opening() -> None:
    assert placeholder_first(["Q", "A", "Q2\n<image>", "A2"]) == ["<image>\nQ", "A", "Q2", "A2"]
    assert placeholder_first(["Look <image> here", "A"]) == ["<image>\nLook  here", "A"]
