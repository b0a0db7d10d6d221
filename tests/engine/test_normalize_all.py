"""Normalizing every entry's units into parts, with and without a limit, and gathering their samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import webdataset as wds

from dataprep.engine.build import build
from dataprep.engine.normalize_all import normalize_all
from dataprep.engine.runner import BuildError, InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.recipe.load import load_recipe
from dataprep.report import summary

from helpers.builds import build_recipe
from helpers.upstream import recipe_yaml, write_conversations


def test_oversized_images_are_reencoded_within_max_side(ray_cluster, upstream, tmp_path):
    data_root, facts = upstream
    recipe_file = tmp_path / "small.yaml"
    text = recipe_yaml("small", data_root, tmp_path / "out").replace(
        "max_pixels: 4000000", "max_pixels: 4000000, max_side: 64"
    )
    recipe_file.write_text(text)
    manifest = build(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=False))
    images = [facts["expected"][key]["images"] for key in facts["expected"]]
    assert manifest.sources[0].reencoded_images == sum(len(item) for item in images)
    for sample in wds.WebDataset(
        [str(tmp_path / "out" / s.path) for s in manifest.shards], shardshuffle=False
    ):
        record = json.loads(sample["json"])
        for (width, height), suffix in zip(record["image_sizes"], record["images"], strict=True):
            assert max(width, height) == 64
            assert suffix == "jpg"


def test_limit_reads_the_first_records_of_each_source(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    recipe_file = tmp_path / "limited.yaml"
    recipe_file.write_text(recipe_yaml("limited", data_root, tmp_path / "out"))
    manifest = build(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", limit=5, progress=False))
    (source,) = manifest.sources
    assert source.read == 5
    assert source.kept + sum(source.rejected.values()) == 5
    assert manifest.limit == 5 and "TRIAL: --limit 5 records per source" in summary(manifest)


def test_a_limit_reads_further_units_only_while_a_source_is_short(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    annotation = data_root / "mine" / "train.jsonl"
    unit_bytes = annotation.stat().st_size // 6 + 1  # the jsonl cut into about 6 units
    recipe_file = tmp_path / "limited.yaml"
    recipe_file.write_text(
        recipe_yaml("limited", data_root, tmp_path / "out") + f"    unit_bytes: {unit_bytes}\n"
    )
    recipe = load_recipe(recipe_file)
    one_unit = len(json_lines_within(annotation, unit_bytes))
    for limit, units in [(1, 1), (one_unit + 1, 2)]:
        out = tmp_path / f"out-{limit}"
        manifest = build(recipe, BuildSettings(out=out, limit=limit, progress=False))
        assert manifest.sources[0].read == limit
        assert len(list((out / ".work" / "parts").glob("*/*[0-9].json"))) == units  # completed part indexes


def json_lines_within(path: Path, size: int) -> list[bytes]:
    """The lines of a jsonl file that start within its first `size` bytes (the first unit)."""
    lines, offset = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        if offset >= size:
            break
        lines.append(line)
        offset += len(line)
    return lines


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_unit_that_cannot_be_read_fails_the_build_before_any_shard(ray_cluster, upstream, tmp_path):
    import pickle

    data_root, _ = upstream
    marker = tmp_path / "ran"
    (data_root / "geo").mkdir(exist_ok=True)
    (data_root / "geo" / "Mix-train.pk").write_bytes(pickle.dumps([{"id": 1, "image": _Payload(marker)}]))
    recipe_file = tmp_path / "hostile.yaml"
    geo = "  - source: geoqa_plus\n    path: geo\n"
    recipe_file.write_text(recipe_yaml("hostile", data_root, tmp_path / "out", extra_sources=geo))
    # a pickle is loaded to count its problems: refused as its units are listed, before any is read
    with pytest.raises(BuildError, match=r"geoqa_plus: cannot list its work units: .*refused pickle global"):
        build(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=False))
    assert not marker.exists()
    (data_root / "cut").mkdir(exist_ok=True)  # listed from its head, broken further on
    (data_root / "cut" / "train_qa.json").write_text(
        '[{"question": "q", "question_id": 1, "image": "a.png", "answer": "1"}, {"question": '
    )
    cut = "  - source: dvqa\n    path: cut\n"
    recipe_file.write_text(recipe_yaml("cut", data_root, tmp_path / "out", extra_sources=cut))
    with pytest.raises(BuildError, match=r"dvqa unit 'part-00000-of-00001'.*not valid JSON"):
        build(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=False))
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not (tmp_path / "out" / "shards").exists()


def test_parts_left_incomplete_by_a_killed_discard_are_normalized_again(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    out, first = build_recipe(tmp_path, data_root)
    tars = sorted((out / ".work" / "parts").glob("*/*.tar"))
    tars[0].unlink()  # `--discard-parts` killed half-way: some files gone, some indexes still there
    tars[-1].with_suffix(".inputs.json").unlink()
    (out / ".work" / "parts.discarded").mkdir()
    _, second = build_recipe(tmp_path, data_root)
    assert second.content_sha256 == first.content_sha256 and tars[0].exists()
    discarded = build(
        load_recipe(tmp_path / "mix.yaml"), BuildSettings(out=out, progress=False, discard_parts=True)
    )
    assert discarded.content_sha256 == first.content_sha256
    assert not (out / ".work" / "parts").exists() and not (out / ".work" / "parts.discarded").exists()


def test_a_broken_image_repaired_in_place_is_kept_by_the_next_build(ray_cluster, tmp_path):
    write_conversations(tmp_path / "up" / "mine")
    _, before = build_recipe(tmp_path, tmp_path / "up")
    good = (tmp_path / "up/mine/images/img_001.jpg").read_bytes()
    (tmp_path / "up/mine/images/truncated.jpg").write_bytes(good)
    _, after = build_recipe(tmp_path, tmp_path / "up")
    (was,), (now,) = before.sources, after.sources
    assert was.rejected["image_truncated"] == 1 and "image_truncated" not in now.rejected
    assert now.kept == was.kept + 1


def _recipe(tmp_path: Path, data_root: Path, unit_bytes: int | None = None):
    recipe_file = tmp_path / "mix.yaml"
    extra = f"    unit_bytes: {unit_bytes}\n" if unit_bytes else ""
    recipe_file.write_text(recipe_yaml("mix", data_root, tmp_path / "out") + extra)
    return load_recipe(recipe_file)


class _Counting(InProcessRunner):
    """The in-process runner, counting the jobs of each stage."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, int] = {}

    def run(self, stage, jobs, total):
        self.jobs[stage] = self.jobs.get(stage, 0) + total
        return super().run(stage, jobs, total)


def test_normalizing_in_process_gathers_every_record_once_and_reuses_completed_parts(upstream, tmp_path):
    data_root, facts = upstream
    recipe = _recipe(tmp_path, data_root, unit_bytes=400)
    settings = BuildSettings(out=tmp_path / "out", progress=False)
    first = _Counting()
    (entry,) = normalize_all(recipe, settings, first)
    assert len(entry.units) > 1 and entry.used == len(entry.units) == first.jobs["normalize"]
    assert len(entry.kept) == len(facts["expected"]) and entry.read == len(entry.kept) + len(facts["rejects"])
    assert {reject.id: reject.reason for reject in entry.rejects} == facts["rejects"]
    assert all(reject.source == "mine" for reject in entry.rejects)
    assert [artifact.path for artifact in entry.artifacts] == ["train.jsonl"]
    again = _Counting()
    (rerun,) = normalize_all(recipe, settings, again)
    assert "normalize" not in again.jobs and "hash" in again.jobs and again.jobs["hash"] == 0
    assert rerun.kept == entry.kept and rerun.rejects == entry.rejects


def test_a_limit_normalizes_units_in_order_only_while_the_entry_is_short(upstream, tmp_path):
    data_root, _ = upstream
    recipe = _recipe(tmp_path, data_root, unit_bytes=400)
    counting = _Counting()
    (entry,) = normalize_all(recipe, BuildSettings(out=tmp_path / "out", limit=1, progress=False), counting)
    assert entry.used == 1 == counting.jobs["normalize"] and entry.read == 1
