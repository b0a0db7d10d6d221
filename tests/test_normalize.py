"""normalize_unit: a sample that cannot be written as contract JSON is a reject, never a failed unit."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dataprep import images as images_module
from dataprep.contract.shards import iter_tar
from dataprep.normalize import index_path, inputs_changed, load_index, normalize_unit
from dataprep.recipe.model import ImagePolicy
from dataprep.sample import Record
from dataprep.sources.base import Source
from dataprep.sources.conversations import Conversations
from dataprep.sources.geoqa_plus import GeoQaPlus


def chat(question: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": "Hello"}]


def normalize(source: Source, part: Path) -> list[dict[str, Any]]:
    """Normalize the source's only unit into `part`; the index's records, read as strict JSON."""
    [unit] = source.units()
    normalize_unit(source, unit, "entry", ImagePolicy(), part, None)
    index = json.loads(index_path(part).read_bytes(), parse_constant=lambda name: 1 / 0)
    assert index == load_index(part)
    return index["records"]


def outcomes(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(entry["id"], entry.get("reason", "kept")) for entry in records]


def kept_documents(part: Path) -> list[dict[str, Any]]:
    """The sample JSON documents a part holds, in order."""
    return [json.loads(data) for name, data in iter_tar(part) if name.endswith(".json")]


def test_jsonl_records_with_lone_surrogates_or_non_finite_numbers_are_rejected(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "ok", "conversations": chat("Hi")}),
        json.dumps({"id": "text", "conversations": chat("Hi \ud800")}),
        json.dumps({"id": "image", "image": "\udc80.jpg", "conversations": chat("<image>\nHi")}),
        json.dumps({"id": "key\ud800", "conversations": chat("Hi")}),
        '{"id": "infinite", "width": 1e400, "conversations": ' + json.dumps(chat("Hi")) + "}",
        '{"id": "nan", "height": NaN, "conversations": ' + json.dumps(chat("Hi")) + "}",
        json.dumps({"id": "after", "conversations": chat("Bye")}),
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(lines))
    part = tmp_path / "part.tar"
    records = normalize(Conversations(tmp_path, Conversations.Options(file="a.jsonl")), part)
    assert outcomes(records) == [
        ("ok", "kept"),
        ("text", "bad_text"),
        ("image", "bad_text"),
        ("key\\ud800", "bad_text"),
        ("infinite", "bad_record"),
        ("nan", "bad_record"),
        ("after", "kept"),
    ]
    assert "'\\ud800', a lone surrogate" in records[1]["detail"]
    assert "NaN or beyond double range" in records[4]["detail"]
    documents = kept_documents(part)
    assert [document["id"] for document in documents] == ["ok", "after"]


def test_json_array_records_with_lone_surrogates_or_huge_numbers_are_rejected(tmp_path: Path) -> None:
    conversation = json.dumps(chat("Hi"))
    elements = [
        json.dumps({"id": "ok", "conversations": chat("Hi")}),
        json.dumps({"id": "text", "conversations": chat("Hi \ud800")}),
        json.dumps({"id": "emoji", "conversations": chat("Hi \U0001f600")}),
        '{"id": "infinite", "width": 1e400, "conversations": ' + conversation + "}",
        '{"id": "big", "width": 123456789012345678901234567890, "conversations": ' + conversation + "}",
    ]
    (tmp_path / "a.json").write_text("[" + ",".join(elements) + "]")
    part = tmp_path / "part.tar"
    records = normalize(Conversations(tmp_path, Conversations.Options(file="a.json")), part)
    assert outcomes(records) == [
        ("ok", "kept"),
        ("text", "bad_text"),
        ("emoji", "kept"),
        ("infinite", "bad_record"),
        ("big", "kept"),
    ]
    documents = kept_documents(part)
    assert documents[1]["conversations"][0]["value"] == "Hi \U0001f600"


def test_an_empty_or_blank_reply_is_rejected_not_trained_as_an_empty_target(tmp_path: Path) -> None:
    def reply(text: str) -> list[dict[str, str]]:
        return [*chat("Hi"), {"from": "human", "value": "More?"}, {"from": "gpt", "value": text}]

    lines = [
        json.dumps({"id": "ok", "conversations": reply("Yes.")}),
        json.dumps({"id": "empty", "conversations": reply("")}),
        json.dumps({"id": "blank", "conversations": reply(" \n\t")}),
        json.dumps({"id": "no_turns_field"}),
        json.dumps(
            {"id": "blank_question", "conversations": [{"from": "human", "value": " "}, *chat("x")[1:]]}
        ),
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(lines))
    part = tmp_path / "part.tar"
    records = normalize(Conversations(tmp_path, Conversations.Options(file="a.jsonl")), part)
    assert outcomes(records) == [
        ("ok", "kept"),
        ("empty", "empty_reply"),
        ("blank", "empty_reply"),
        ("no_turns_field", "bad_record"),
        ("blank_question", "kept"),
    ]
    assert "turn 3 (gpt) is empty" in records[1]["detail"]
    assert "no `conversations` field" in records[3]["detail"]
    assert [document["id"] for document in kept_documents(part)] == ["ok", "blank_question"]


def test_a_geoqa_plus_record_with_a_lone_surrogate_is_bad_text(tmp_path: Path) -> None:
    def record(subject: str) -> dict[str, Any]:
        figure = np.zeros((8, 8), np.uint8)
        return {
            "id": subject,
            "image": figure,
            "subject": subject,
            "choices": ["1", "2", "3", "4"],
            "label": 0,
        }

    (tmp_path / "Mix-train.pk").write_bytes(pickle.dumps([record("a"), record("b\ud800"), record("c")]))
    records = normalize(GeoQaPlus(tmp_path, GeoQaPlus.Options()), tmp_path / "part.tar")
    assert outcomes(records) == [
        ("Mix-train:a", "kept"),
        ("Mix-train:b\\ud800", "bad_text"),
        ("Mix-train:c", "kept"),
    ]


def test_a_python_not_encoding_file_names_as_utf8_refuses_to_read(tmp_path: Path) -> None:
    """`café.jpg` exists: kept under UTF-8; a C locale with PYTHONUTF8=0 would make it a reject."""
    Image.new("RGB", (8, 8), "orange").save(tmp_path / "café.jpg")
    line = {"id": "cafe", "image": "café.jpg", "conversations": chat("<image>\nHi")}
    (tmp_path / "a.jsonl").write_text(json.dumps(line, ensure_ascii=False), encoding="utf-8")
    script = (
        "import sys; from pathlib import Path; from dataprep.normalize import normalize_unit; "
        "from dataprep.recipe.model import ImagePolicy; from dataprep.sources.conversations import Conversations; "
        "root = Path(sys.argv[1]); source = Conversations(root, Conversations.Options(file='a.jsonl')); "
        "[unit] = source.units(); normalize_unit(source, unit, 'entry', ImagePolicy(), root / sys.argv[2], None)"
    )
    python = [sys.executable, "-c", script, str(tmp_path)]
    utf8 = subprocess.run([*python, "utf8.tar"], env={**os.environ, "LC_ALL": "C.UTF-8"}, capture_output=True)
    assert utf8.returncode == 0, utf8.stderr.decode()
    assert outcomes(load_index(tmp_path / "utf8.tar")["records"]) == [("cafe", "kept")]

    ascii_env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    ascii_names = subprocess.run([*python, "ascii.tar"], env=ascii_env, capture_output=True)
    assert ascii_names.returncode != 0
    assert "encodes file names as ascii, not UTF-8" in ascii_names.stderr.decode()
    assert not index_path(tmp_path / "ascii.tar").exists()


class Watched(Conversations):
    """The conversations adapter, noting how much of the part is on disk as each record is read."""

    part: Path
    written: list[int]

    def read(self, unit: str) -> Iterator[Record]:
        partial = self.part.with_name(self.part.name + ".partial")
        for record in super().read(unit):
            self.written.append(partial.stat().st_size if partial.exists() else 0)
            yield record


def test_samples_are_written_as_they_are_made_not_held_until_the_unit_ends(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = []
    for index in range(6):
        noise = rng.integers(0, 256, (64, 64, 3), np.uint8)  # ~12 KB as PNG: past any write buffer
        Image.fromarray(noise).save(tmp_path / f"{index}.png")
        lines.append(json.dumps({"id": str(index), "image": f"{index}.png", "conversations": chat("Hi")}))
    (tmp_path / "a.jsonl").write_text("\n".join(lines))
    source = Watched(tmp_path, Conversations.Options(file="a.jsonl"))
    source.part, source.written = tmp_path / "part.tar", []
    reencoded = ImagePolicy(max_side=63, format="png")  # held in the part (a kept file is referred to)
    normalize_unit(source, source.units()[0], "entry", reencoded, source.part, None)
    records = load_index(source.part)["records"]
    assert [entry["id"] for entry in records] == [str(index) for index in range(6)]
    assert all(entry["reencoded"] == 1 for entry in records)
    assert source.written[0] == 0 and source.written[-1] > 4 * 11_000


def test_a_unit_that_fails_half_way_leaves_no_part_behind(tmp_path: Path) -> None:
    elements = [json.dumps({"id": str(index), "conversations": chat("Hi")}) for index in range(3)]
    (tmp_path / "a.json").write_text("[" + ",".join(elements) + ", {")  # cut short
    source = Conversations(tmp_path, Conversations.Options(file="a.json"))
    with pytest.raises(ValueError, match="malformed JSON after element 2"):
        normalize(source, tmp_path / "parts" / "part.tar")
    assert list(tmp_path.glob("parts/*")) == []


def test_an_image_file_too_big_to_hold_is_rejected_unread_and_retried_once_replaced(tmp_path: Path) -> None:
    policy = ImagePolicy(max_pixels=1)  # files of 8 + 64 MiB bytes at most
    with open(tmp_path / "huge.png", "wb") as handle:
        handle.truncate(65 << 20)  # sparse: no disk used
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"id": "huge", "image": "huge.png", "conversations": chat("Hi")})
    )
    source = Conversations(tmp_path, Conversations.Options(file="a.jsonl"))
    part = tmp_path / "part.tar"
    normalize_unit(source, source.units()[0], "entry", policy, part, None)
    [record] = load_index(part)["records"]
    assert (record["reason"], record["detail"]) == (
        "image_too_large",
        f"huge.png: {65 << 20:,} bytes, over the {(64 << 20) + 8:,} bytes an image file may have",
    )
    assert not inputs_changed(part)
    os.truncate(tmp_path / "huge.png", 10)  # replaced: the next build reads it again
    assert inputs_changed(part)


def test_with_fingerprints_each_image_is_fingerprinted_once_from_the_pixels_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for index, colour in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (40, 30), colour).save(images / f"{index}.png")
    records = [
        {"id": "one", "image": "0.png", "conversations": chat("<image>\nHi")},
        {"id": "two", "image": ["1.png", "2.png"], "conversations": chat("<image>\n<image>\nHi")},
        {"id": "text", "conversations": chat("Hi")},
    ]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    source = Conversations(tmp_path, Conversations.Options(file="a.jsonl", image_root="images"))
    seen: list[tuple[int, int]] = []
    real = images_module.image_fingerprint

    def counted(image: Image.Image) -> Any:
        seen.append(image.size)
        return real(image)

    monkeypatch.setattr(images_module, "image_fingerprint", counted)
    [unit] = source.units()
    normalize_unit(source, unit, "entry", ImagePolicy(), tmp_path / "part.tar", None, fingerprints=True)
    assert len(seen) == 3  # one call per image, in the worker that decoded it
    index = load_index(tmp_path / "part.tar")["records"]
    documents = kept_documents(tmp_path / "part.tar")
    for entry, document in zip(index, documents, strict=True):
        assert entry["fingerprints"] == document["meta"]["fingerprints"]
    assert [len(entry["fingerprints"]) for entry in index] == [1, 2, 0]
    with Image.open(images / "0.png") as image:
        assert index[0]["fingerprints"][0] == real(image.convert("RGB")).to_json()

    normalize_unit(source, unit, "entry", ImagePolicy(), tmp_path / "plain.tar", None)
    assert len(seen) == 3  # none without
    assert all("fingerprints" not in document["meta"] for document in kept_documents(tmp_path / "plain.tar"))
    assert all("fingerprints" not in entry for entry in load_index(tmp_path / "plain.tar")["records"])
