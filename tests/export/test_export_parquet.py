"""`dataprep export parquet`: read back by `datasets` (files and folder, also streaming), every sample
equal to what the shards hold (a repeated source's copies too); deterministic, a re-run rewrites
nothing; a reused folder is replaced, a foreign one refused; an unreadable shard fails in one line."""

from __future__ import annotations

import json
import os
import shutil

import datasets
import pyarrow.parquet as pq
import pytest

from dataprep.card import CARD
from dataprep.cli import main
from dataprep.contract.manifest import load_manifest
from dataprep.contract.shards import iter_tar
from dataprep.export import parquet
from dataprep.export.folder import RECORD
from dataprep.export.parquet import DATA

from helpers.bridge_shards import rewrite_shard
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


def test_a_repeated_sources_copies_each_carry_their_images(mixture, tmp_path):
    manifest_path, _, originals = mixture
    out = tmp_path / "export"
    assert main(["export", "parquet", str(manifest_path), "--out", str(out)]) == 0
    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "c"))
    ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    rows = [(row["key"], row["source"], [image["bytes"] for image in row["images"]]) for row in ds]
    held = [(original.key, original.source, original.images) for original in originals]
    repeated = {source.name for source in load_manifest(manifest_path).sources if source.repeat > 1}
    assert rows == held and any(source in repeated and images for _, source, images in rows)


def test_the_summary_is_printed_and_kept_in_the_record(build, tmp_path, capsys):
    build_out, held = build
    out = tmp_path / "export"
    capsys.readouterr()
    assert _export(build_out, out) == 0
    summary = json.loads(capsys.readouterr().out)
    shards = len(list((build_out / "shards").glob("*.tar")))
    assert summary["layout"] == "parquet" and summary["samples"] == len(held) and summary["left_out"] == {}
    assert summary["files"] == shards and summary["data_files"] == "data/*.parquet"
    record = json.loads((out / RECORD).read_text())
    assert record["complete"] is True and {k: record[k] for k in summary} == summary
    assert record["owns"] == sorted([DATA, CARD, RECORD])


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


def test_a_file_added_inside_the_export_goes_with_the_next_export(build, tmp_path):
    """`data/` is the export's: what is put there is not kept (as a build's `shards/`)."""
    build_out, _ = build
    out = tmp_path / "export"
    assert _export(build_out, out) == 0
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    (out / DATA / "mine.parquet").write_text("mine")
    assert _export(build_out, out) == 0
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == written


@pytest.mark.parametrize("case", ["file", "foreign", "foreign_beside_data", "bad_record"])
def test_a_bad_out_is_refused_in_one_line_writing_nothing(build, tmp_path, capsys, case):
    build_out, _ = build
    out = tmp_path / "export"
    if case == "file":
        out.write_text("mine")
    elif case == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "foreign_beside_data":
        assert _export(build_out, out) == 0
        (out / "mine.parquet").write_text("mine")
    else:
        out.mkdir()
        (out / RECORD).write_text("[]")
    before = sorted((p.as_posix(), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    capsys.readouterr()
    assert _export(build_out, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"dataprep export parquet: error: --out {out}")
    assert sorted((p.as_posix(), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == before


def test_a_shard_unlike_the_manifest_fails_in_one_line_before_anything_is_written(build, tmp_path, capsys):
    build_out, _ = build
    broken = tmp_path / "broken"
    shutil.copytree(build_out, broken, ignore=shutil.ignore_patterns(".work"))
    shard = sorted((broken / "shards").glob("*.tar"))[1]
    shard.write_bytes(shard.read_bytes()[:700])  # cut inside the first member's data
    out = tmp_path / "export"
    capsys.readouterr()
    assert _export(broken, out) == 1
    size = (build_out / "shards" / shard.name).stat().st_size
    assert capsys.readouterr().err == (
        f"dataprep export parquet: error: {shard}: 700 bytes, manifest says {size}\n"
    )
    assert not out.exists()


def test_an_unreadable_shard_fails_naming_it_and_leaves_no_partial_file(build, tmp_path, capsys):
    build_out, _ = build
    broken = tmp_path / "broken"
    shutil.copytree(build_out, broken, ignore=shutil.ignore_patterns(".work"))
    manifest_path = broken / "manifest.json"
    original = manifest_path.read_bytes()
    shard = load_manifest(manifest_path).shard_paths(manifest_path)[1]
    saved = shard.read_bytes()
    members = [(name, b"{broken" if name.endswith(".json") else data) for name, data in iter_tar(shard)]
    rewrite_shard(manifest_path, 1, members)  # the manifest agrees: only reading the samples fails
    out = tmp_path / "export"
    capsys.readouterr()
    assert _export(broken, out) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        f"dataprep export parquet: error: {shard}, sample 0 cannot be exported (JSONDecodeError"
    )
    assert not list(out.rglob("*.partial"))  # the file of the shard before is not left half-written
    assert json.loads((out / RECORD).read_text())["complete"] is False
    shard.write_bytes(saved)
    manifest_path.write_bytes(original)
    assert _export(broken, out) == 0  # the record it left lets the export run again
    assert json.loads((out / RECORD).read_text())["complete"] is True
