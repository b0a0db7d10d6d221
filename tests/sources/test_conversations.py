"""The `conversations` adapter and the LLaVA-record core it shares with sharegpt4v and llava_zh."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from dataprep.contract.sample import Turn, conversation_problem
from dataprep.fixtures.conversations import generate
from dataprep.paths import UnsafePath, resolve_inside
from dataprep.sample import ImageFile, Record, Reject, Sample
from dataprep.sources import registry
from dataprep.sources._llava_records import (
    MAX_LINE_BYTES,
    BadRecord,
    jsonl_lines,
    place_images,
)
from dataprep.sources.base import MAX_PARSING_UNITS
from dataprep.sources.conversations import Conversations

from helpers.llava_records import engine_rejects
from helpers.records import by_id, read_records, reject_counts, samples_of


@pytest.fixture()
def built(tmp_path: Path) -> tuple[Path, dict, dict[str, Record]]:
    facts = generate(tmp_path)
    return tmp_path, facts, by_id(read_records(Conversations, tmp_path, **facts["options"]))


def test_counts_and_contract(built) -> None:
    root, facts, records = built
    samples = samples_of(list(records.values()))
    assert len(samples) == facts["adapter_samples"]
    assert reject_counts(list(records.values())) == Counter(facts["expected_rejects"])
    assert all(conversation_problem(sample) is None for sample in samples)
    source = Conversations(root, Conversations.Options(**facts["options"]))
    rejected = engine_rejects(source, samples)
    assert rejected == Counter(facts["engine_rejects"])
    assert len(samples) - rejected.total() == facts["expected_samples"]


def test_registered() -> None:
    assert registry()["conversations"] is Conversations
    assert Conversations.version == "2"


def test_single_image_record_with_size(built) -> None:
    root, facts, records = built
    sample = records["000000001"]
    assert sample.conversations == [
        Turn("human", "<image>\nWhat colour is the largest shape?"),
        Turn("gpt", "It is orange."),
    ]
    assert sample.images == [ImageFile(root / "images", "photos/0001.jpg")]
    width, height = facts["image_sizes"]["photos/0001.jpg"]
    assert sample.meta == {
        "file": "train.jsonl",
        "line": 1,
        "image": "photos/0001.jpg",
        "width": width,
        "height": height,
    }


def test_missing_placeholder_is_prepended(built) -> None:
    _, _, records = built
    assert records["no_placeholder"].conversations[0] == Turn(
        "human", "<image>\nDescribe the picture briefly."
    )


def test_multi_image_records(built) -> None:
    root, _, records = built
    pair = records["pair"]
    assert [image.relpath for image in pair.images] == ["photos/0003.jpg", "photos/0004.jpg"]
    assert (
        pair.conversations[0].value
        == "Image-1: <image>\nImage-2: <image>\nWhat differs between the two images?"
    )
    across = records["array_multi"]
    assert across.images == [
        ImageFile(root / "images", "photos/0001.jpg"),
        ImageFile(root / "images", "photos/0006.jpg"),
    ]
    assert [turn.value for turn in across.conversations] == [
        "<image>\nFirst picture.",
        "OK.",
        "<image>\nSecond picture. Which is brighter?",
        "The second.",
    ]
    assert across.meta == {"file": "extra.json", "index": 3, "image": ["photos/0001.jpg", "photos/0006.jpg"]}


def test_text_only_records(built) -> None:
    _, _, records = built
    for record_id, line in (("text_only", 4), ("empty_image", 5)):
        assert records[record_id].images == []
        assert records[record_id].meta == {"file": "train.jsonl", "line": line}
    assert records["empty_image"].conversations == [Turn("human", "What is 2 + 2?"), Turn("gpt", "4")]
    assert len(records["array_text"].conversations) == 4


def test_bad_json_line_is_rejected_and_reading_goes_on(built) -> None:
    _, facts, records = built
    line = facts["bad_json_line"]
    reject = records[f"train.jsonl:{line}"]
    assert reject.reason == "bad_record"
    assert f"line {line}" in reject.detail and "invalid JSON" in reject.detail
    assert records["too_few_placeholders"].reason == "placeholder_mismatch"
    assert (
        records["too_few_placeholders"].detail
        == "file train.jsonl, line 8: 1 <image> placeholders for 2 images"
    )
    assert records["extra.json#2"] == Reject(
        "extra.json#2", "bad_record", "file extra.json, index 2: expected an object, got str"
    )


def test_bad_conversations(built) -> None:
    _, _, records = built
    assert records["starts_with_gpt"] == Reject(
        "starts_with_gpt",
        "bad_conversation",
        "file train.jsonl, line 9: turn 0 is from 'gpt', expected 'human'",
    )
    assert records["system_turn"].reason == "bad_conversation"
    assert "'system'" in records["system_turn"].detail


def test_path_escape_is_left_to_the_engine(built) -> None:
    root, _, records = built
    image = records["escape"].images[0]
    assert image == ImageFile(root / "images", "../../etc/passwd")
    with pytest.raises(UnsafePath):
        resolve_inside(image.root, image.relpath)


def test_text_is_kept_exactly(built) -> None:
    root, _, records = built
    values = [turn.value for turn in records["multi_turn_zh"].conversations]
    assert values == [
        "<image>\n图中有几个圆形？",
        "图中有两个圆形。",
        "它们是什么颜色的？  ",
        "一个是红色，另一个是蓝色。\n",
    ]
    raw = (root / "train.jsonl").read_bytes()
    assert raw.endswith(b"\r\n")
    assert json.dumps(values[3], ensure_ascii=False).encode("utf-8") in raw


def test_placement_keep_and_front(tmp_path: Path) -> None:
    facts = generate(tmp_path)
    kept = by_id(read_records(Conversations, tmp_path, **facts["options"]))
    assert kept["42"].conversations[0].value == "What is shown?\n<image>"
    moved = by_id(read_records(Conversations, tmp_path, **facts["options"], image_placement="front"))
    assert moved["42"].conversations[0].value == "<image>\nWhat is shown?"
    assert moved["pair"].conversations == kept["pair"].conversations


@pytest.mark.parametrize("unit_bytes", [1, 37, 100, 333, 5000])
def test_units_split_files_without_losing_or_repeating_records(tmp_path: Path, unit_bytes: int) -> None:
    facts = generate(tmp_path)
    whole = read_records(Conversations, tmp_path, **facts["options"])
    split = Conversations(tmp_path, Conversations.Options(**facts["options"], unit_bytes=unit_bytes))
    units = split.units()
    assert len(units) == len(set(units))
    if unit_bytes < 1000:
        assert sum(unit.startswith("train.jsonl@") for unit in units) > 1
        assert sum(unit.startswith("extra.json#") for unit in units) > 1
    by_unit = [list(split.read(unit)) for unit in units]
    jsonl = [record for part in by_unit for record in part if "train.jsonl" in repr(record)]
    assert jsonl == [record for record in whole if "train.jsonl" in repr(record)]
    array = [record for part in by_unit for record in part if "extra.json" in repr(record)]
    assert sorted(array, key=repr) == sorted([r for r in whole if "extra.json" in repr(r)], key=repr)


def test_a_small_file_of_many_records_is_cut_by_records_not_bytes(tmp_path: Path) -> None:
    """Units hold about `unit_records` records each (so a small file spreads over every worker),
    every record once, in order; a `.json` array (each of whose units parses it whole) into at most
    `MAX_PARSING_UNITS` strides."""
    turns = [{"from": "human", "value": "What is it?"}, {"from": "gpt", "value": "A chart."}]
    lines = [json.dumps({"id": str(index), "conversations": turns}) for index in range(2100)]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "extra.json").write_text("[" + ",\n".join(lines) + "]")
    source = Conversations(
        tmp_path, Conversations.Options(files=["train.jsonl", "extra.json"], unit_records=100)
    )
    units = source.units()
    jsonl_units = [unit for unit in units if unit.startswith("train.jsonl@")]
    assert [unit for unit in units if unit.startswith("extra.json#")] == [
        f"extra.json#{k}/21" for k in range(21)
    ]
    per_unit = [[record.id for record in source.read(unit)] for unit in jsonl_units]
    assert len(per_unit) == 21 and all(95 <= len(ids) <= 105 for ids in per_unit)
    assert [record_id for ids in per_unit for record_id in ids] == [str(index) for index in range(2100)]
    finer = Conversations(
        tmp_path, Conversations.Options(files=["train.jsonl", "extra.json"], unit_records=5)
    )
    assert sum(unit.startswith("extra.json#") for unit in finer.units()) == MAX_PARSING_UNITS
    assert sum(unit.startswith("train.jsonl@") for unit in finer.units()) == 420


def test_unit_names_are_stable_and_checked(tmp_path: Path) -> None:
    facts = generate(tmp_path)
    source = Conversations(tmp_path, Conversations.Options(**facts["options"], unit_bytes=1000))
    size = (tmp_path / "train.jsonl").stat().st_size
    strides = math.ceil((tmp_path / "extra.json").stat().st_size / 1000)
    assert source.units()[:2] == ["train.jsonl@0-1000", "train.jsonl@1000-2000"]
    assert f"train.jsonl@{size // 1000 * 1000}-{size}" in source.units()
    assert source.units()[-strides:] == [f"extra.json#{k}/{strides}" for k in range(strides)]
    with pytest.raises(ValueError, match="unknown unit"):
        list(source.read("other.jsonl@0-10"))


def test_options() -> None:
    assert Conversations.Options(file="a.jsonl").names() == ["a.jsonl"]
    assert Conversations.Options(files=["a.jsonl", "b.json"]).names() == ["a.jsonl", "b.json"]
    for bad in (
        {},
        {"file": "a.jsonl", "files": ["b.json"]},
        {"file": "a.csv"},
        {"file": "a.json", "root": "x"},
    ):
        with pytest.raises(ValidationError):
            Conversations.Options(**bad)


def test_roots_and_paths(tmp_path: Path) -> None:
    default = Conversations(tmp_path, Conversations.Options(file="data/a.jsonl"))
    assert default.roots() == [tmp_path / "."]
    assert default.inputs() == [tmp_path / "data/a.jsonl"]
    assert default.missing() == [str(tmp_path / "data/a.jsonl")]
    elsewhere = tmp_path / "elsewhere"
    absolute = Conversations(
        tmp_path / "p", Conversations.Options(file=str(tmp_path / "a.json"), image_root=str(elsewhere))
    )
    assert absolute.roots() == [elsewhere]
    assert absolute.inputs() == [tmp_path / "a.json"]


def test_records_without_ids_and_odd_fields(tmp_path: Path) -> None:
    lines = [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"id": 1.5, "conversations": []},
        {"id": "x", "image": ["a.jpg", 3], "conversations": []},
        {"id": "y", "conversations": [{"from": "human"}]},
        {"id": "z", "conversations": []},
        {
            "id": "w",
            "image": "a.jpg",
            "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "<image>"}],
        },
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    records = read_records(Conversations, tmp_path, file="a.jsonl")
    assert records[0].id == "a.jsonl:1" and isinstance(records[0], Sample)
    assert [(r.id, r.reason) for r in records[1:]] == [
        ("a.jsonl:2", "bad_record"),
        ("x", "bad_record"),
        ("y", "bad_record"),
        ("z", "bad_conversation"),
        ("w", "placeholder_mismatch"),
    ]


def test_broken_json_array_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('[{"id": "1", "conversations": []}, {"id": ')
    (tmp_path / "b.json").write_text('{"id": "1"}')
    (tmp_path / "c.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps([{"id": "1", "conversations": []}]).encode()
    )
    for name in ("a.json", "b.json"):
        with pytest.raises(ValueError, match=name):
            read_records(Conversations, tmp_path, file=name)
    [reject] = read_records(Conversations, tmp_path, file="c.json")
    assert reject == Reject("1", "bad_conversation", "file c.json, index 0: no turns")


def test_place_images() -> None:
    assert place_images(["Q\n<image>", "A", "Q2", "A2"], 1, "front") == ["<image>\nQ", "A", "Q2", "A2"]
    assert place_images(["Q", "A", "<image>\nQ2", "A2"], 1, "front") == ["<image>\nQ", "A", "Q2", "A2"]
    assert place_images(["Q", "A", "<image>\nQ2", "A2"], 1, "keep") == ["Q", "A", "<image>\nQ2", "A2"]
    assert place_images(["Q", "A"], 1, "keep") == ["<image>\nQ", "A"]
    assert place_images(["Q", "A"], 0, "front") == ["Q", "A"]
    for values, count in (
        (["<image>\nQ", "A"], 0),
        (["Q", "A"], 2),
        (["<image><image>Q", "A"], 1),
        (["Q", "<image>"], 1),
    ):
        with pytest.raises(BadRecord) as problem:
            place_images(values, count, "front")
        assert problem.value.reason == "placeholder_mismatch"


CHAT = '[{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]'


def test_numbers_beyond_64_bits_or_double_range_do_not_fail_a_json_array(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        f'[{{"id": 12345678901234567890123, "width": 1.5, "conversations": {CHAT}}},'
        f' {{"id": "far", "width": 1e400, "height": 98765432109876543210, "conversations": {CHAT}}},'
        f' {{"id": "after", "conversations": {CHAT}}}]'
    )
    big, far, after = read_records(Conversations, tmp_path, file="a.json")
    assert (big.id, big.meta["width"]) == ("12345678901234567890123", 1.5)
    assert type(big.meta["width"]) is float
    assert far.meta["height"] == 98765432109876543210
    assert math.isinf(far.meta["width"])  # the engine rejects it: JSON cannot hold it
    assert isinstance(after, Sample)


def test_lone_surrogates_in_a_json_array_are_kept_as_written(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        '[{"id": "1", "image": "\\ud800.jpg", "conversations": '
        '[{"from": "human", "value": "Hi \\ud83d\\ude00 \\udbff"}, {"from": "gpt", "value": "Hello"}]},'
        ' {"id": "2", "image": "\\udbff.jpg", "conversations": ' + CHAT + "}]"
    )
    first, second = read_records(Conversations, tmp_path, file="a.json")
    assert first.conversations[0].value == "<image>\nHi \U0001f600 \udbff"
    assert [first.meta["image"], second.meta["image"]] == ["\ud800.jpg", "\udbff.jpg"]


def test_a_json_array_element_nested_too_deeply_is_a_bad_record(tmp_path: Path) -> None:
    deep = "[" * 3000 + "]" * 3000
    (tmp_path / "a.json").write_text(
        f'[{{"id": "deep", "x": {deep}, "conversations": {CHAT}}}, {{"id": "ok", "conversations": {CHAT}}}]'
    )
    deep_record, ok = read_records(Conversations, tmp_path, file="a.json")
    assert deep_record == Reject("a.json#0", "bad_record", "file a.json, index 0: nested too deeply")
    assert isinstance(ok, Sample)


def test_a_line_too_long_is_skipped_unread_whichever_unit_it_starts_or_ends_in(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b"x" * 100 + b'\n{"b": 2}\n')
    assert list(jsonl_lines(path, 0, path.stat().st_size, max_line=16)) == [
        (1, b'{"a": 1}\n'),
        (2, None),
        (3, b'{"b": 2}\n'),
    ]
    assert list(jsonl_lines(path, 50, path.stat().st_size, max_line=16)) == [(3, b'{"b": 2}\n')]


def test_a_line_one_byte_over_the_limit_does_not_take_the_next_line_with_it(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"x" * 16 + b'\n{"b": 2}\n{"c": 3}\n')  # 17 bytes with its newline
    assert list(jsonl_lines(path, 0, path.stat().st_size, max_line=16)) == [
        (1, None),
        (2, b'{"b": 2}\n'),
        (3, b'{"c": 3}\n'),
    ]


def test_a_jsonl_line_over_the_limit_is_a_bad_record(tmp_path: Path) -> None:
    good = {"id": "ok", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    huge = json.dumps({"id": "huge", "conversations": [{"from": "human", "value": "x" * MAX_LINE_BYTES}]})
    (tmp_path / "a.jsonl").write_text(f"{huge}\n{json.dumps(good)}\n")
    records = read_records(Conversations, tmp_path, file="a.jsonl")
    assert [(type(record).__name__, record.id) for record in records] == [
        ("Reject", "a.jsonl:1"),
        ("Sample", "ok"),
    ]
    assert records[0].reason == "bad_record" and "longer than 67,108,864 bytes" in records[0].detail
