from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dataprep.fixtures import vlmevalkit_tsv as fixture
from dataprep.sample import ImageBytes, Reject, Sample
from dataprep.sources import registry
from dataprep.sources.vlmevalkit_tsv import VLMEvalKitTSV


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "evals"
    return root, fixture.generate(root)


def read(root: Path, **options) -> list[Sample | Reject]:
    source = VLMEvalKitTSV(root, VLMEvalKitTSV.Options(**options))
    return [record for unit in source.units() for record in source.read(unit)]


def test_registered() -> None:
    assert registry()["vlmevalkit_tsv"] is VLMEvalKitTSV


@pytest.mark.parametrize("name", [fixture.MCQ_FILE, fixture.VQA_FILE])
@pytest.mark.parametrize("rows_per_unit", [1, 2, 1000])
def test_rows_read_exactly(upstream: tuple[Path, dict], name: str, rows_per_unit: int) -> None:
    root, facts = upstream
    records = read(root, file=name, rows_per_unit=rows_per_unit)
    samples = {record.id: record for record in records if isinstance(record, Sample)}
    assert {key: (s.conversations[0].value, s.conversations[1].value) for key, s in samples.items()} == (
        facts["samples"][name]
    )
    for key, sample in samples.items():
        assert sample.images == [ImageBytes(facts["images"][key], name=key)]
    rejects = Counter(record.reason for record in records if isinstance(record, Reject))
    assert rejects == facts["rejects"][name]


def test_meta_keeps_the_other_columns(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    samples = {r.id: r for r in read(root, file=fixture.MCQ_FILE) if isinstance(r, Sample)}
    assert samples["0"].meta == {
        "category": "colour",
        "l2-category": "perception",
        "file": fixture.MCQ_FILE,
        "hint": "Look at the background.",
    }
    assert samples["3"].conversations[0].value.startswith('<image>\nRead\tthe "label":\nwhat does it say?\n')


def test_rejects_name_what_is_wrong(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    rejects = {r.id: r for r in read(root, file=fixture.MCQ_FILE) if isinstance(r, Reject)}
    assert rejects["4"].detail == "answer 'E' is not one of AB"
    assert rejects["5"].detail == "refers to row '999', which the file does not hold"
    assert rejects["6"].detail.startswith("image is not base64")
    assert rejects["7"].detail == "no question"


def test_image_lists_and_text_only_rows(tmp_path: Path) -> None:
    first, second = b"\x89PNG one" * 20, b"\xff\xd8 two" * 20
    rows = [
        {"index": 1, "image": repr([fixture.b64(first), fixture.b64(second)]), "question": "Same?",
         "A": "yes", "B": "no", "answer": "B"},
        {"index": 2, "image": "", "question": "Two plus two?", "answer": "4"},
    ]  # fmt: skip
    fixture.write_tsv(tmp_path / "x.tsv", ["index", "image", "question", "A", "B", "answer"], rows)
    samples = {r.id: r for r in read(tmp_path, file="x.tsv")}
    assert [image.data for image in samples["1"].images] == [first, second]
    assert samples["1"].conversations[0].value.startswith("<image>\n<image>\nSame?\nA. yes\nB. no")
    assert samples["2"].images == []
    assert samples["2"].conversations[0].value.startswith("Two plus two?")
