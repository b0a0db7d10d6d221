from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pydantic import ValidationError

from dataprep.contract.sample import conversation_problem
from dataprep.fixtures import synthdog_en as fixture
from dataprep.sample import ImageBytes, Record, Reject, Sample
from dataprep.sources import registry
from dataprep.sources.synthdog_en import DEFAULT_REQUESTS, SynthdogEn, pick

from helpers.records import by_id, read_records, reject_counts, samples_of

SHARD0 = "data/train-00000-of-00084-5a3f1b2c9d8e7f60.parquet"
SHARD1 = "data/train-00001-of-00084-0c4e8d2a7b1f9e35.parquet"
VALIDATION = "data/validation-00000-of-00001-e2b9c47a1d3f8065.parquet"


@pytest.fixture()
def upstream(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "synthdog-en"
    return root, fixture.generate(root, seed=0)


def read_all(root: Path, **options) -> list[Record]:
    return read_records(SynthdogEn, root, **options)


def test_registered() -> None:
    assert registry()["synthdog_en"] is SynthdogEn
    assert SynthdogEn.licence == "none stated (generator MIT)"


def test_units_are_row_groups_of_the_train_shards(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    source = SynthdogEn(root, SynthdogEn.Options())
    assert source.inputs() == [root / SHARD0, root / SHARD1]
    assert source.missing() == []
    runs = [(SHARD0, "0[0:3]"), (SHARD0, "1[3:6]"), (SHARD0, "2[6:7]")]
    runs += [(SHARD1, "0[0:2]"), (SHARD1, "1[2:4]"), (SHARD1, "2[4:5]")]
    assert source.units() == [f"{shard}#{run}" for shard, run in runs]


@pytest.mark.parametrize("unit_rows", [1, 2, 3, 400])
def test_units_cut_row_groups_by_rows_and_keep_the_row_order(
    upstream: tuple[Path, dict], unit_rows: int
) -> None:
    root, facts = upstream
    source = SynthdogEn(root, SynthdogEn.Options(unit_rows=unit_rows))
    units = source.units()
    group_sizes = [3, 3, 1, 2, 2, 1]  # the fixture's train shards: 7 rows in groups of 3, 5 in groups of 2
    assert len(units) == sum(-(-size // unit_rows) for size in group_sizes)
    records = [list(source.read(unit)) for unit in units]
    assert all(len(unit) <= unit_rows for unit in records)
    ids = [record.id for unit in records for record in unit]
    assert ids == [record.id for record in read_all(root)]  # the same rows in the same order
    assert len(ids) == len(set(ids)) == sum(facts["files"][path]["rows"] for path in (SHARD0, SHARD1))
    assert [list(source.read(unit)) for unit in reversed(units)] == records[::-1]


def test_a_big_row_group_makes_units_of_unit_rows(tmp_path: Path) -> None:
    stem = write_shard(tmp_path, pa.array([b"x"] * 1300, pa.binary()), [GOOD_TRUTH] * 1300)
    source = SynthdogEn(tmp_path, SynthdogEn.Options(shards=None, glob="data/*.parquet"))
    relpath = f"data/{stem}.parquet"
    runs = ["0:400", "400:800", "800:1200", "1200:1300"]
    assert source.units() == [f"{relpath}#0[{run}]" for run in runs]
    ids = [record.id for unit in source.units() for record in source.read(unit)]
    assert ids == [f"{stem}:{row}" for row in range(1300)]


def test_counts_match_the_fixture(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    records = read_all(root)
    samples = samples_of(records)
    assert len(samples) == facts["adapter_samples"]
    assert len(samples) - sum(facts["engine_rejects"].values()) == facts["expected_samples"]
    assert reject_counts(records) == facts["expected_rejects"]
    assert all(conversation_problem(sample) is None for sample in samples)
    stem0, stem1 = Path(SHARD0).stem, Path(SHARD1).stem
    assert [record.id for record in records] == [f"{stem0}:{row}" for row in range(7)] + [
        f"{stem1}:{row}" for row in range(5)
    ]


def test_sample_turns_image_and_meta(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    sample_id = f"{Path(SHARD1).stem}:4"
    sample = by_id(read_all(root))[sample_id]
    assert sample.conversations[0].value == "<image>\n" + pick(DEFAULT_REQUESTS, sample_id)
    assert sample.conversations[1].value == facts["texts"][sample_id]
    assert sample.meta == {"file": SHARD1, "row": 4, "image_path": "image_4.jpg", "split": "train"}
    [image] = sample.images
    stored = pq.read_table(root / SHARD1).column("image")[4].as_py()
    assert image == ImageBytes(stored["bytes"], name="image_4.jpg")
    assert Image.open(io.BytesIO(image.data)).format == "JPEG"


def test_every_answer_is_the_exact_text_sequence(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    samples = [record for record in read_all(root) if isinstance(record, Sample)]
    assert {sample.id: sample.conversations[1].value for sample in samples} == {
        key: text for key, text in facts["texts"].items() if "train-" in key
    }


def test_prompts_are_deterministic_and_configurable(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    first = [sample.conversations[0].value for sample in read_all(root) if isinstance(sample, Sample)]
    second = [sample.conversations[0].value for sample in read_all(root) if isinstance(sample, Sample)]
    assert first == second
    assert len(set(first)) > 1
    assert {value.removeprefix("<image>\n") for value in first} <= set(DEFAULT_REQUESTS)
    assert "Please recognize the text in the image." in DEFAULT_REQUESTS
    assert "请识别图中的文字。" in DEFAULT_REQUESTS
    custom = read_all(root, prompt={"requests": ["OCR this page."]})
    assert {sample.conversations[0].value for sample in custom if isinstance(sample, Sample)} == {
        "<image>\nOCR this page."
    }
    with pytest.raises(ValidationError):
        SynthdogEn.Options(prompt={"requests": []})


def test_planted_bad_rows(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    records = by_id(read_all(root))
    stem1 = Path(SHARD1).stem
    assert records[f"{stem1}:1"].reason == "bad_record"
    assert "row 1" in records[f"{stem1}:1"].detail
    assert records[f"{stem1}:3"].reason == "bad_record"
    assert "text_sequence" in records[f"{stem1}:3"].detail
    corrupt = records[facts["corrupt_image_id"]]  # passed on as is: the engine rejects it
    assert isinstance(corrupt, Sample)
    with pytest.raises(OSError):
        Image.open(io.BytesIO(corrupt.images[0].data)).load()


def test_shards_by_index(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    only_second = SynthdogEn(root, SynthdogEn.Options(shards=[1]))
    assert only_second.inputs() == [root / SHARD1]
    assert {record.meta["file"] for record in read_all(root, shards=[1]) if isinstance(record, Sample)} == {
        SHARD1
    }
    assert [r.id for r in read_all(root, shards=[0, 1])] == [r.id for r in read_all(root)]
    absent = SynthdogEn(root, SynthdogEn.Options(shards=[0, 7]))
    assert absent.inputs() == [root / SHARD0]
    assert absent.missing() == ["shard 7: no file matches data/train-00007-of-*.parquet"]
    validation = SynthdogEn(root, SynthdogEn.Options(shards=[0], split="validation"))
    assert validation.inputs() == [root / VALIDATION]


def test_glob_and_split_selection(upstream: tuple[Path, dict]) -> None:
    root, facts = upstream
    assert SynthdogEn(root, SynthdogEn.Options(glob="data/train-0000[1-4]-*.parquet")).inputs() == [
        root / SHARD1
    ]
    records = read_all(root, split="validation")
    assert len(records) == facts["files"][VALIDATION]["rows"]
    assert {record.meta["split"] for record in records} == {"validation"}
    nothing = SynthdogEn(root, SynthdogEn.Options(glob="data/test-*.parquet"))
    assert nothing.units() == []
    assert nothing.missing() == ["no file matches data/test-*.parquet"]


@pytest.mark.parametrize(
    "options",
    [
        {"shards": [0], "glob": "data/*.parquet"},
        {"glob": "../elsewhere/*.parquet"},
        {"glob": "/data/*.parquet"},
        {"shards": [-1]},
        {"shards": []},
        {"batch_rows": 0},
    ],
)
def test_invalid_options(options: dict) -> None:
    with pytest.raises(ValidationError):
        SynthdogEn.Options(**options)


def test_batches_are_bounded(upstream: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = upstream
    seen: list[tuple[int, int]] = []
    original = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        for batch in original(self, *args, **kwargs):
            seen.append((kwargs["batch_size"], batch.num_rows))
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    small = read_all(root, batch_rows=1)
    assert seen and all(rows <= size == 1 for size, rows in seen)
    assert len(seen) == 12
    monkeypatch.undo()
    assert [(r.id, type(r)) for r in small] == [(r.id, type(r)) for r in read_all(root)]


def test_unknown_unit(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    source = SynthdogEn(root, SynthdogEn.Options(shards=[1]))
    for unit in (
        f"{SHARD0}#0[0:3]",
        f"{SHARD1}#0",
        f"{SHARD1}#0[0:1]",
        f"{SHARD1}#x",
        "elsewhere.parquet#0[0:1]",
    ):
        with pytest.raises(ValueError, match="unknown unit"):
            list(source.read(unit))


def write_shard(root: Path, images: pa.Array, ground_truths: list[str]) -> str:
    """One hand-made train shard under `root`; returns its sample id stem."""
    (root / "data").mkdir(parents=True)
    table = pa.table({"image": images, "ground_truth": pa.array(ground_truths, pa.string())})
    pq.write_table(table, root / "data/train-00000-of-00001-hand.parquet")
    return "train-00000-of-00001-hand"


GOOD_TRUTH = '{"gt_parse": {"text_sequence": "page text"}}'


@pytest.mark.parametrize(
    "ground_truth",
    ['{"gt_parse": null}', '{"gt_parse": "abc"}', '{"gt_parse": []}', "[" * 100_000 + "]" * 100_000],
    ids=["null", "string", "list", "deeply-nested"],
)
def test_a_malformed_ground_truth_rejects_its_row_only(tmp_path: Path, ground_truth: str) -> None:
    cell = {"bytes": b"\xff\xd8jpeg", "path": "page.jpg"}
    stem = write_shard(tmp_path, pa.array([cell, cell]), [ground_truth, GOOD_TRUTH])
    bad, good = read_all(tmp_path)
    assert isinstance(bad, Reject)
    assert (bad.id, bad.reason) == (f"{stem}:0", "bad_record")
    assert "row 0" in bad.detail
    assert isinstance(good, Sample)
    assert good.conversations[1].value == "page text"


def test_a_plain_binary_image_column_is_read(tmp_path: Path) -> None:
    stem = write_shard(tmp_path, pa.array([b"\xff\xd8jpeg", None], pa.binary()), [GOOD_TRUTH, GOOD_TRUTH])
    sample, absent = read_all(tmp_path)
    assert isinstance(sample, Sample)
    assert sample.images == [ImageBytes(b"\xff\xd8jpeg", name="")]
    assert sample.meta["image_path"] is None
    assert isinstance(absent, Reject)
    assert (absent.id, absent.reason) == (f"{stem}:1", "image_missing")


def test_a_big_row_group_is_held_once(tmp_path: Path) -> None:
    # pyarrow decodes a whole row group (~2x its size in its pool); read without a buffered
    # stream it also holds the raw column chunk (~3x): 16 rows of 1 MiB in one group
    payload = 16 * 2**20
    cells = [{"bytes": random.randbytes(2**20), "path": f"{row}.jpg"} for row in range(16)]
    write_shard(tmp_path, pa.array(cells), [GOOD_TRUTH] * 16)
    source = SynthdogEn(tmp_path, SynthdogEn.Options(batch_rows=1))
    live = [pa.total_allocated_bytes() for _ in source.read(source.units()[0])]
    assert len(live) == 16
    assert max(live) < 2.5 * payload


def test_a_shard_without_the_published_columns_is_named(tmp_path: Path) -> None:
    root = tmp_path / "synthdog-en"
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.table({"image": [b"x"], "text": ["t"]}), root / SHARD0)
    with pytest.raises(ValueError, match=r"no column ground_truth \(has image, text\)"):
        read_all(root, shards=[0])


def test_a_shard_cut_short_or_corrupt_is_named(upstream: tuple[Path, dict]) -> None:
    root, _ = upstream
    cut, corrupt = root / SHARD1, root / SHARD0
    cut.write_bytes(cut.read_bytes()[:3000])  # an interrupted download: no footer
    with pytest.raises(ValueError, match=rf"{SHARD1}: not a readable parquet file \(Parquet magic bytes"):
        SynthdogEn(root, SynthdogEn.Options()).units()
    data = bytearray(corrupt.read_bytes())
    data[200 : len(data) // 2] = bytes(
        byte ^ 0x5A for byte in data[200 : len(data) // 2]
    )  # pages, not footer
    corrupt.write_bytes(data)
    with pytest.raises(ValueError, match=rf"{SHARD0}: not a readable parquet file \(Corrupt snappy"):
        read_all(root, shards=[0])


OUT_OF_MEMORY = """
import os, resource, sys
from pathlib import Path
import pyarrow.parquet  # imported at the first read: loaded before the limit, which is for the data
from dataprep.sources._parquet import parquet_batches
size = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
resource.setrlimit(resource.RLIMIT_AS, (size + (24 << 20),) * 2)
try:
    for _ in parquet_batches(Path(sys.argv[1]), ["image"], use_threads=False):
        pass
except Exception as error:
    print(type(error).__name__, error)
"""


def test_a_row_group_too_big_for_memory_is_not_called_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    table = pa.table({"image": [os.urandom(1 << 20) for _ in range(48)]})
    pq.write_table(table, path, row_group_size=48, use_dictionary=False, compression="none")
    result = subprocess.run(
        [sys.executable, "-c", OUT_OF_MEMORY, str(path)], capture_output=True, text=True, check=True
    )
    assert "MemoryError" in result.stdout
    assert "not a readable parquet file" not in result.stdout
