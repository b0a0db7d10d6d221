from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from dataprep.contract.sample import conversation_problem
from dataprep.fixtures import geoqa_plus as fixture
from dataprep.sample import ImageBytes, Record, Sample
from dataprep.sources import registry
from dataprep.sources.geoqa_plus import ForbiddenPickle, GeoQaPlus, load_pickle

from helpers.records import by_id, read_records, reject_counts, samples_of

SUFFIX = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "geoqa+"
    return root, fixture.generate(root, seed=0)


def read_all(root: Path, **options) -> list[Record]:
    return read_records(GeoQaPlus, root, **options)


def test_registered() -> None:
    assert registry()["geoqa_plus"] is GeoQaPlus
    assert GeoQaPlus.licence == "none stated"


def test_default_file_counts(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    source = GeoQaPlus(root, GeoQaPlus.Options())
    assert source.units() == ["Mix-train.pk#0/1"]
    assert source.inputs() == [root / "Mix-train.pk"]
    records = read_all(root)
    samples = samples_of(records)
    assert len(samples) == facts["expected_samples"]
    assert reject_counts(records) == facts["expected_rejects"]
    assert all(conversation_problem(sample) is None for sample in samples)


def test_turns_answer_and_meta(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    samples = [record for record in read_all(root) if isinstance(record, Sample)]
    for sample, (problem_id, subject, choices, label) in zip(
        samples, facts["problems"]["Mix-train.pk"], strict=True
    ):
        assert sample.id == f"Mix-train:{problem_id}"
        lines = "\n".join(f"{letter}. {choice}" for letter, choice in zip("ABCD", choices, strict=True))
        assert sample.conversations[0].value == f"<image>\n{subject}\n{lines}{SUFFIX}"
        assert sample.conversations[1].value == "ABCD"[label]
        assert sample.meta == {"id": problem_id, "label": label, "file": "Mix-train.pk", "split": "train"}
    first = samples[0]
    assert first.conversations[0].value == (
        "<image>\n如图，AB是⊙O的直径，点C在⊙O上，若∠BAC=30°，则∠B的度数为()\nA. 30°\nB. 45°\nC. 60°\nD. 90°"
        + SUFFIX
    )
    assert first.conversations[1].value == "C"
    assert type(samples[1].meta["label"]) is int  # numpy integer label made plain


def test_figure_is_the_pickled_array_as_png(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    records = load_pickle(root / "Mix-train.pk")
    samples = by_id(read_all(root))
    for record in records[:3]:
        [image] = samples[f"Mix-train:{record['id']}"].images
        assert isinstance(image, ImageBytes)
        assert image.data.startswith(b"\x89PNG")
        decoded = np.asarray(Image.open(io.BytesIO(image.data)))
        assert decoded.shape == record["image"].shape[:2]
        assert np.array_equal(decoded, record["image"].reshape(decoded.shape))
        assert (decoded < 128).any() and (decoded > 200).any()  # black lines on white


def test_bad_records(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    records = by_id(read_all(root))
    assert records["Mix-train:300"].reason == "bad_answer"
    assert records["Mix-train:300"].detail == "label 4 for 4 choices"
    assert records["Mix-train:301"].reason == "bad_image"
    assert "float32" in records["Mix-train:301"].detail
    assert records["Mix-train:302"].reason == "bad_image"
    assert records["Mix-train:303"].reason == "bad_record"
    assert "choices" in records["Mix-train:303"].detail


def test_several_files_keep_ids_apart(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    files = ["GeoQA-train.pk", "Backtrans-train.pk", "new-test.pk"]
    records = read_all(root, files=files)
    assert all(isinstance(record, Sample) for record in records)
    assert len(records) == sum(facts["per_file"][name]["samples"] for name in files)
    ids = [record.id for record in records]
    assert ids[:6] == [
        "GeoQA-train:100",
        "GeoQA-train:101",
        "GeoQA-train:102",
        "Backtrans-train:100",
        "Backtrans-train:101",
        "Backtrans-train:102",
    ]
    assert {record.meta["split"] for record in records if record.meta["file"] == "new-test.pk"} == {"test"}
    assert (
        by_id(records)["Backtrans-train:100"]
        .conversations[0]
        .value.startswith("<image>\n在图中，AB是⊙O的直径")
    )


def test_old_numpy_names_and_protocol_2_load(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    data = pickle.dumps([{"image": array, "numbers": {1.5}, "raw": b"\x00\xff"}], protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old and b"_codecs" in old
    path = tmp_path / "old.pk"
    path.write_bytes(old)
    [record] = load_pickle(path)
    assert np.array_equal(record["image"], array)
    assert record["numbers"] == {1.5}
    assert record["raw"] == b"\x00\xff"


class RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Evaluates:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [RunsACommand, Evaluates])
def test_hostile_pickle_is_refused_before_anything_runs(tmp_path: Path, payload: type) -> None:
    marker = tmp_path / "pwned"
    root = tmp_path / "geoqa+"
    root.mkdir()
    records = [
        {"id": 1, "subject": "x", "choices": ["a", "b"], "label": 0},
        {"id": 2, "image": payload(marker)},
    ]
    data = pickle.dumps(records, protocol=4)
    named = {arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)}
    assert named & {"posix", "nt", "system", "eval"}  # the stream really names a dangerous global
    (root / "Mix-train.pk").write_bytes(data)
    source = GeoQaPlus(root, GeoQaPlus.Options())
    for listed_or_read in (source.units, lambda: list(source.read("Mix-train.pk#0/1"))):
        with pytest.raises(
            ForbiddenPickle, match=r"Mix-train\.pk: refused pickle global (posix|nt|builtins)\."
        ) as error:
            listed_or_read()
        assert error.value.path == root / "Mix-train.pk"
    assert not marker.exists()


def test_codecs_encode_is_limited_to_latin1(tmp_path: Path) -> None:
    path = tmp_path / "codec.pk"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(ValueError, match=r"codec.pk: cannot be unpickled: .*rot13"):
        load_pickle(path)


@pytest.mark.parametrize("cut", [1, 100, -1])
def test_a_cut_pickle_is_named(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "Mix-train.pk"
    path.write_bytes(pickle.dumps([{"id": 1, "subject": "x" * 200}])[:cut])
    with pytest.raises(ValueError, match=r"Mix-train.pk: cannot be unpickled: "):
        load_pickle(path)


def test_not_a_list_raises(tmp_path: Path) -> None:
    (tmp_path / "Mix-train.pk").write_bytes(pickle.dumps({"id": 1}))
    source = GeoQaPlus(tmp_path, GeoQaPlus.Options())
    with pytest.raises(ValueError, match=r"Mix-train\.pk holds a dict, not a list"):
        source.units()
    with pytest.raises(ValueError, match=r"Mix-train\.pk holds a dict, not a list"):
        list(source.read("Mix-train.pk#0/1"))


def test_options(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    sample = read_all(root, prompt={"suffix": "\n请直接回答选项字母。"})[0]
    assert sample.conversations[0].value.endswith("D. 90°\n请直接回答选项字母。")
    with pytest.raises(ValidationError):
        GeoQaPlus.Options(files=[])
    source = GeoQaPlus(root, GeoQaPlus.Options(files=["absent.pk"]))
    assert source.missing() == [str(root / "absent.pk")]
    for unit in ("Mix-train.pk#0/1", "absent.pk", "absent.pk#1/1", "absent.pk#x/1"):
        with pytest.raises(ValueError, match="unknown unit"):
            list(source.read(unit))
    with pytest.raises(ValidationError):
        GeoQaPlus.Options(unit_records=0)


@pytest.mark.parametrize(("unit_records", "units"), [(2000, 1), (500, 3), (100, 13), (7, 64)])
def test_a_pickle_is_cut_into_runs_of_consecutive_problems(
    tmp_path: Path, unit_records: int, units: int
) -> None:
    figure = np.zeros((2, 3), dtype=np.uint8)
    problems = [
        {"id": index, "image": figure, "subject": f"p{index}", "choices": ["1", "2"], "label": index % 2}
        for index in range(1300)
    ]
    (tmp_path / "Mix-train.pk").write_bytes(pickle.dumps(problems, protocol=4))
    source = GeoQaPlus(tmp_path, GeoQaPlus.Options(unit_records=unit_records))
    names = source.units()
    assert names == [f"Mix-train.pk#{part}/{units}" for part in range(units)]
    read = [[record.id for record in source.read(name)] for name in names]
    assert [record_id for run in read for record_id in run] == [f"Mix-train:{i}" for i in range(1300)]
    assert max(map(len, read)) - min(map(len, read)) <= 1  # runs of equal size, in the file's order
    assert [[record.id for record in source.read(name)] for name in reversed(names)] == read[::-1]
