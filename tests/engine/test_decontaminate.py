"""The decontamination stage on planted overlaps: found, near-misses not, `report` and `drop` agree,
duplicates reported, and the build stays byte-reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataprep.contract.manifest import Manifest
from dataprep.contract.shards import iter_samples
from dataprep.engine.build import build
from dataprep.engine.runner import InProcessRunner
from dataprep.engine.settings import BuildSettings
from dataprep.fixtures import overlaps as planted
from dataprep.recipe.load import load_recipe


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("planted")
    return root, planted.generate(root, seed=0, items=6)


def run(root: Path, out: Path, mode: str) -> Manifest:
    recipe = root / f"{out.name}.yaml"
    recipe.write_text(planted.recipe_yaml(root, out, mode, again=True))
    return build(load_recipe(recipe), BuildSettings(out=out, progress=False), InProcessRunner())


def eval_overlaps(out: Path) -> dict[tuple[str, str], str]:
    """(source, sample id) → the detail of its `eval_overlap` reject."""
    lines = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    return {
        (line["source"], line["id"]): line["detail"] for line in lines if line["reason"] == "eval_overlap"
    }


@pytest.fixture(scope="module")
def builds(
    data: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Manifest]]:
    root, _ = data
    folder = tmp_path_factory.mktemp("builds")
    return {
        name: (folder / name, run(root, folder / name, name.rstrip("2")))
        for name in ("report", "drop", "drop2")
    }


def test_planted_overlaps_are_dropped_and_near_misses_kept(data, builds) -> None:
    _, facts = data
    out, manifest = builds["drop"]
    dropped = eval_overlaps(out)
    train = {sample for source, sample in dropped if source == "train"}
    assert train == set(facts["expected"])
    assert not train & set(facts["near_misses"])
    for sample, (item, kind, _) in facts["expected"].items():
        assert dropped[("train", sample)].startswith(
            f"bench item {item}: {'image' if kind == 'image' else 'question'}"
        )
    decontamination = manifest.decontamination
    assert decontamination is not None and decontamination.mode == "drop"
    assert decontamination.eval_items == {"bench": 6}
    assert decontamination.dropped == len(dropped)
    train_report = manifest.sources[0]
    assert train_report.rejected == {"eval_overlap": len(facts["expected"])}
    assert train_report.kept == train_report.read - len(facts["expected"])
    kept_ids = {sample.id for shard in out.glob("shards/*.tar") for _, sample, _ in iter_samples(shard)}
    assert not kept_ids & train


def test_report_lists_the_same_overlaps_and_drops_nothing(data, builds) -> None:
    _, facts = data
    _, reported = builds["report"]
    out, dropped = builds["drop"]
    assert reported.decontamination is not None and dropped.decontamination is not None
    assert reported.decontamination.overlaps == dropped.decontamination.overlaps
    assert reported.decontamination.dropped == 0
    assert reported.sources[0].rejected == {}
    counts = {
        (report.source, report.eval_set): report.samples for report in reported.decontamination.overlaps
    }
    by_source: dict[str, int] = {}
    for source, _ in eval_overlaps(out):
        by_source[source] = by_source.get(source, 0) + 1
    assert counts == {(source, "bench"): count for source, count in by_source.items()}
    examples = [example for report in reported.decontamination.overlaps for example in report.examples]
    assert examples and all(example.sample in facts["expected"] for example in examples)


def test_duplicates_across_sources_are_reported(builds) -> None:
    _, manifest = builds["report"]
    assert manifest.decontamination is not None
    kinds = {(report.kind, report.sources): report for report in manifest.decontamination.duplicates}
    exact = kinds[("exact_duplicate_sample", ("train", "again"))]
    assert exact.pairs == manifest.sources[0].kept  # every sample read twice
    near = kinds[("near_duplicate_image", ("train", "again"))]
    assert all(distance <= 6 for _, _, distance in near.examples)
    assert ("0-jpeg", "0-jpeg", 0.0) in exact.examples or exact.examples[0][0] == exact.examples[0][1]


def test_fingerprints_are_in_the_shards_and_builds_are_reproducible(builds) -> None:
    first, first_manifest = builds["drop"]
    second, second_manifest = builds["drop2"]
    assert first_manifest.content_sha256 == second_manifest.content_sha256
    for shard in sorted(first.glob("shards/*.tar")):
        assert shard.read_bytes() == (second / "shards" / shard.name).read_bytes()
    samples = [sample for shard in first.glob("shards/*.tar") for _, sample, _ in iter_samples(shard)]
    assert all(len(sample.meta["fingerprints"]) == len(sample.images) for sample in samples)
    assert {"decontaminate", "normalize"} <= set(first_manifest.build.stages)


def test_a_build_on_ray_matches_the_in_process_one(data, builds, tmp_path: Path) -> None:
    root, _ = data
    _, in_process = builds["drop"]
    recipe = root / "ray.yaml"
    recipe.write_text(planted.recipe_yaml(root, tmp_path / "ray", "drop", again=True))
    on_ray = build(load_recipe(recipe), BuildSettings(out=tmp_path / "ray", workers=2, progress=False))
    assert on_ray.content_sha256 == in_process.content_sha256
