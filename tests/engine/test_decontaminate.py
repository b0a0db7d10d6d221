"""The decontamination stage on planted overlaps: found, near-misses not, `report` and `drop` agree,
duplicates reported, the build stays byte-reproducible, and a re-run matches again only what changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataprep.contract.manifest import Manifest
from dataprep.contract.shards import iter_samples
from dataprep.engine.build import build
from dataprep.engine.decontaminate import INDEX_FILE, INDEX_MARKER, MATCHES_DIR
from dataprep.engine.process_runner import ProcessRunner
from dataprep.engine.runner import InProcessRunner
from dataprep.engine.settings import WORK_DIR, BuildSettings
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


def _on_processes(root: Path, out: Path) -> tuple[Manifest, float]:
    """A `drop` build of the planted recipe on a pool of local processes; the seconds it spent starting
    the pool (0: no job was shipped)."""
    recipe = root / "processes.yaml"
    recipe.write_text(planted.recipe_yaml(root, out, "drop", again=True))
    runner = ProcessRunner(workers=2, progress=False)
    try:
        manifest = build(load_recipe(recipe), BuildSettings(out=out, progress=False), runner)
    finally:
        runner.stop()
    return manifest, runner.start_seconds


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {path.name: (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.iterdir()}


def test_a_finished_builds_rerun_reuses_the_index_and_every_match_and_starts_no_pool(builds, tmp_path):
    planted.generate(tmp_path, seed=0, items=6)  # the module's data, in a folder of this test's own
    out = tmp_path / "out"
    first, started = _on_processes(tmp_path, out)
    work = out / WORK_DIR
    index, matches = (work / INDEX_FILE).stat().st_mtime_ns, _stamps(work / MATCHES_DIR)
    section = (out / "manifest.json").read_bytes().split(b'"decontamination"')[1].split(b'"build"')[0]

    rerun, restarted = _on_processes(tmp_path, out)
    assert started > 0 and restarted == 0 and rerun.build.stages["engine_start"] == 0
    assert (work / INDEX_FILE).stat().st_mtime_ns == index and _stamps(work / MATCHES_DIR) == matches
    assert len(matches) == 2  # one per part: train's and again's
    assert section == (out / "manifest.json").read_bytes().split(b'"decontamination"')[1].split(b'"build"')[0]
    _, scratch = builds["drop"]
    assert first.decontamination == rerun.decontamination == scratch.decontamination
    assert rerun.content_sha256 == first.content_sha256 == scratch.content_sha256


def test_a_changed_eval_set_or_part_is_matched_again(tmp_path):
    facts = planted.generate(tmp_path, seed=0, items=6)
    out = tmp_path / "out"
    _on_processes(tmp_path, out)
    assert {sample for source, sample in eval_overlaps(out) if source == "train"} == set(facts["expected"])

    tsv = tmp_path / "evals" / planted.EVAL_FILE
    header, *rows = tsv.read_text().splitlines(keepends=True)
    tsv.write_text(header + "".join(row for row in rows if not row.startswith("0\t")))  # item 0 gone
    manifest, started = _on_processes(tmp_path, out)
    assert started > 0 and manifest.decontamination is not None
    assert manifest.decontamination.eval_items == {"bench": 5}
    still = {sample for sample, (item, _, _) in facts["expected"].items() if item != 0}
    assert {sample for source, sample in eval_overlaps(out) if source == "train"} == still

    images = tmp_path / "train" / "images"
    (images / "unrelated-0.jpg").write_bytes((images / "2-jpeg.jpg").read_bytes())  # a copy of item 2's
    manifest, started = _on_processes(tmp_path, out)
    dropped = eval_overlaps(out)
    assert started > 0 and {sample for source, sample in dropped if source == "train"} == still | {
        "unrelated-0"
    }
    assert dropped[("train", "unrelated-0")].startswith("bench item 2: image")
    assert len(list((out / WORK_DIR / MATCHES_DIR).iterdir())) == 2

    (out / WORK_DIR / INDEX_MARKER).write_text("{")  # markers a user mangled
    for marker in (out / WORK_DIR / MATCHES_DIR).iterdir():
        marker.write_text("[]")
    _, started = _on_processes(tmp_path, out)
    assert started > 0 and eval_overlaps(out) == dropped
