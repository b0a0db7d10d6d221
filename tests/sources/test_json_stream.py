from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from pathlib import Path

import ijson
import pytest

from dataprep.sources._json_stream import PRESERVING_BACKEND, has_lone_surrogate_escape, ijson_backend, plain


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "array.json"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "lone"),
    [
        (rb'["\ud800"]', True),
        (rb'["a\udc80b"]', True),
        (rb'["\ud800\ud800"]', True),
        (rb'["\ud800\u0041"]', True),
        (rb'["\ud83d\ude00\ude00"]', True),
        (rb'["\ud83d\\ude00"]', True),  # the low half is text: the high one is alone
        (rb'["\\ud83d\ude00"]', True),  # the high half is text: the low one is alone
        (rb'["\ud83d\ude00", "\uD83D\uDE00", "\ud83d\uDE00\ud83d\ude00"]', False),
        (rb'["\u00e9\u4e2d\ud55c"]', False),  # escapes that are not surrogates (\ud55c is Hangul)
        (b'["\xf0\x9f\x98\x80 plain UTF-8"]', False),
        (rb'["\\ud800"]', True),  # text, not an escape: a false positive, which only costs speed
    ],
)
def test_lone_surrogate_escapes_are_found(tmp_path: Path, data: bytes, lone: bool) -> None:
    assert has_lone_surrogate_escape(write(tmp_path, data)) is lone


def test_blocks_split_pairs_without_false_alarms_or_misses(tmp_path: Path) -> None:
    rng = random.Random(0)
    data = json.dumps(["x" * rng.randrange(7) + "\U0001f600" for _ in range(200)]).encode()
    assert data.count(b"\\ud83d\\ude00") == 200
    path = write(tmp_path, data)
    assert not any(has_lone_surrogate_escape(path, block) for block in range(32, 90))
    middle = data.index(b"\\ud83d", len(data) // 2)
    for lone in (
        b'["\\udc00",' + data[1:],
        data[:middle] + b"\\ud800 " + data[middle:],
        data[:-1] + b',"\\ud800"]',
    ):
        path = write(tmp_path, lone)
        assert all(has_lone_surrogate_escape(path, block) for block in range(32, 90))


def items(backend: object, path: Path) -> list:
    with path.open("rb") as handle:
        return list(backend.items(handle, "item"))


def test_the_backend_keeps_lone_surrogates_that_the_c_one_would_alter(tmp_path: Path) -> None:
    assert items(ijson, write(tmp_path, rb'["a\ud800b", "\ud800\ud800"]')) == ["a?b", "\U00010000"]
    path = write(tmp_path, rb'["a\ud800b", "\ud800\ud800", "\udc80", "\ud83d\ude00"]')
    assert ijson_backend(path) is PRESERVING_BACKEND
    assert items(ijson_backend(path), path) == ["a\ud800b", "\ud800\ud800", "\udc80", "\U0001f600"]
    assert ijson_backend(write(tmp_path, rb'["\ud83d\ude00"]')) is ijson


def test_plain_turns_decimals_into_floats() -> None:
    value = {"a": [Decimal("1.5"), 12345678901234567890123, {"b": Decimal("-0.0")}], "c": "1.5"}
    assert plain(value) == {"a": [1.5, 12345678901234567890123, {"b": -0.0}], "c": "1.5"}
    assert math.isinf(plain(Decimal("1E+400")))
