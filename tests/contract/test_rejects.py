"""`rejects.jsonl` lines: every field, canonical JSON, one line each."""

from __future__ import annotations

import json

from dataprep.contract.rejects import RejectLine
from dataprep.sample import Reject


def test_a_reject_line_is_one_canonical_json_line_with_every_field() -> None:
    line = RejectLine("chartqa", "q7", "image_missing", "png/7.png not found", "train.json#0")
    data = line.to_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == {
        "source": "chartqa",
        "id": "q7",
        "reason": "image_missing",
        "detail": "png/7.png not found",
        "unit": "train.json#0",
    }
    assert data == data.strip() + b"\n" and b", " not in data  # canonical: no spaces


def test_an_adapter_reject_round_trips_through_its_json() -> None:
    reject = Reject("r1", "bad_record", "no `answer`")
    assert Reject.from_json({"seq": 3, **reject.to_json()}) == reject
