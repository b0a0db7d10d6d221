"""`dataprep export parquet`: read back by `datasets` (files and folder, also streaming), every sample
equal to what the shards hold; deterministic; a reused folder is replaced, a foreign one refused."""

from __future__ import annotations

import os
import shutil

import datasets
import pyarrow.parquet as pq
import pytest

from dataprep.card import CARD
from dataprep.cli import main
from dataprep.export import parquet
from dataprep.export.parquet import DATA, RECORD

from helpers.sample_kinds import build_opening_with, shard_samples


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = build_opening_with(tmp_path_factory.mktemp("build"), "multi")
    return out, shard_samples(out)


def _export(build_out, out) -> int:
    return main(["export", "parquet", str(build_out / "manifest.json"), "--out", str(out)])


def _as_held(row) -> tuple[str, dict]:
    """A row as `shard_samples` gives the sample: its json and its images by suffix."""
    images = row["images"]
    suffixes = [image["path"].partition(".")[2] for image in images]
    record = {
        "source": row["source"],
        "id": row["id"],
        "images": suffixes,
        "image_sizes": row["image_sizes"],
        "conversations": row["conversations"],
        "meta": row["meta"],
    }
    return row["key"], {
        "json": record,
        "images": {s: image["bytes"] for s, image in zip(suffixes, images, strict=True)},
    }


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("how", ["folder", "parquet"])
def test_datasets_reads_every_sample_back(build, tmp_path, how, streaming):
    build_out, held = build
    out = tmp_path / "export"
    assert _export(build_out, out) == 0
    if how == "folder":
        ds = datasets.load_dataset(
            str(out), split="train", streaming=streaming, cache_dir=str(tmp_path / "c")
        )
    else:
        ds = datasets.load_dataset(
            "parquet",
            data_files=f"{out}/{DATA}/*.parquet",
            split="train",
            streaming=streaming,
            cache_dir=str(tmp_path / "c"),
        )
    assert isinstance(ds.features["images"].feature, datasets.Image)
    assert isinstance(ds.features["meta"], datasets.Json)
    ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    rows = dict(_as_held(row) for row in ds)
    assert rows == held


def test_images_decode_and_row_groups_are_bounded(build, tmp_path, monkeypatch):
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 3)
    build_out, _ = build
    out = tmp_path / "export"
    assert _export(build_out, out) == 0
    files = sorted((out / DATA).glob("*.parquet"))
    assert [file.name for file in files] == [
        p.with_suffix(".parquet").name for p in sorted((build_out / "shards").glob("*.tar"))
    ]
    for file in files:
        metadata = pq.ParquetFile(file).metadata
        sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        assert max(sizes) == 3 and sum(sizes) == metadata.num_rows
    row = next(
        r
        for r in datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "c"))
        if len(r["images"]) > 1
    )
    assert [list(image.size) for image in row["images"]] == row["image_sizes"]


def test_same_bytes_anywhere_and_a_rerun_rewrites_nothing(build, tmp_path):
    build_out, _ = build
    first, second = tmp_path / "a", tmp_path / "b"
    assert _export(build_out, first) == 0 and _export(build_out, second) == 0
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert str(CARD) in map(str, names) and len(names) == 5  # three shards, card, record
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in names)
    stamps = {name: os.stat(first / name).st_mtime_ns for name in names}
    assert _export(build_out, first) == 0
    assert {name: os.stat(first / name).st_mtime_ns for name in names} == stamps
    assert "path: data/*.parquet" in (first / CARD).read_text()


def test_an_earlier_export_is_replaced_stale_files_removed(build, tmp_path):
    build_out, _ = build
    out = tmp_path / "export"
    assert _export(build_out, out) == 0
    smaller = build_opening_with(tmp_path / "smaller", "text")
    assert _export(smaller, out) == 0
    assert sorted(p.name for p in (out / DATA).iterdir()) == [
        p.with_suffix(".parquet").name for p in sorted((smaller / "shards").glob("*.tar"))
    ]


@pytest.mark.parametrize("case", ["file", "foreign", "foreign_in_data", "bad_record"])
def test_a_bad_out_is_refused_in_one_line_writing_nothing(build, tmp_path, capsys, case):
    build_out, _ = build
    out = tmp_path / "export"
    if case == "file":
        out.write_text("mine")
    elif case == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "foreign_in_data":
        assert _export(build_out, out) == 0
        (out / DATA / "mine.parquet").write_text("mine")
    else:
        out.mkdir()
        (out / RECORD).write_text("[]")
    before = sorted((p.as_posix(), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    capsys.readouterr()
    assert _export(build_out, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"dataprep export parquet: error: --out {out}")
    assert sorted((p.as_posix(), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == before


def test_an_unreadable_shard_fails_naming_it_and_leaves_no_partial_file(build, tmp_path, capsys):
    build_out, _ = build
    broken = tmp_path / "broken"
    shutil.copytree(build_out, broken, ignore=shutil.ignore_patterns(".work"))
    shard = sorted((broken / "shards").glob("*.tar"))[1]
    shard.write_bytes(shard.read_bytes()[:700])  # cut inside the first member's data
    out = tmp_path / "export"
    assert _export(broken, out) == 1
    assert f"export failed: {shard}: not a readable shard" in capsys.readouterr().err
    assert not list(out.rglob("*.partial"))
    shutil.copy(build_out / "shards" / shard.name, shard)
    assert _export(broken, out) == 0  # the record it left lets the export run again
