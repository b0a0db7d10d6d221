"""The demo recipe end to end: all eight sources + user data, read back with webdataset."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from dataprep.cli import main
from dataprep.engine.build import build
from dataprep.engine.settings import BuildSettings
from dataprep.fixtures import generate_all
from dataprep.fixtures.tokenizer import demo_tokenizer
from dataprep.recipe.load import load_recipe

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-data")
    return root, generate_all(root)


def _facts_for(name: str, source: str, facts: dict) -> dict:
    return (
        facts["sharegpt4v"]["subsets"][name.removeprefix("sharegpt4v_")]
        if source == "sharegpt4v"
        else facts[source]
    )


def test_demo_recipe_builds_every_source_faithfully(ray_cluster, fixtures, tmp_path):
    data_root, facts = fixtures
    overrides = {"data_root": str(data_root), "tokens.tokenizer": str(demo_tokenizer(data_root))}
    recipe = load_recipe(REPO / "recipes" / "demo.yaml", overrides)
    assert {entry.source for entry in recipe.sources} >= {
        "sharegpt4v",
        "llava_zh",
        "dvqa",
        "chartqa",
        "ai2d",
        "docvqa",
        "geoqa_plus",
        "synthdog_en",
    }
    manifest = build(recipe, BuildSettings(out=tmp_path / "out", progress=False))

    for report in manifest.sources:
        expected = _facts_for(report.name, report.source, facts)
        rejected = Counter(expected["expected_rejects"]) + Counter(expected.get("engine_rejects", {}))
        assert report.kept == expected["expected_samples"], report.name
        assert report.rejected == dict(sorted(rejected.items())), report.name
        assert report.read == report.kept + sum(rejected.values())
        entry = next(entry for entry in recipe.sources if entry.label == report.name)
        assert report.in_mixture == report.kept * entry.repeat
        assert len(report.artifacts) >= 1 and all(len(a.sha256) == 64 for a in report.artifacts)

    urls = [str(tmp_path / "out" / shard.path) for shard in manifest.shards]
    per_source = Counter()
    keys = set()
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        record = json.loads(sample["json"])
        per_source[record["source"]] += 1
        keys.add(sample["__key__"])
        turns = record["conversations"]
        assert [turn["from"] for turn in turns] == ["human", "gpt"] * (len(turns) // 2)
        placeholders = sum(turn["value"].count("<image>") for turn in turns)
        assert placeholders == len(record["images"]) == len(record["image_sizes"])
        if record["images"]:
            assert turns[0]["value"].startswith("<image>") or record["source"] == "my_data"
        for suffix, (width, height) in zip(record["images"], record["image_sizes"], strict=True):
            assert Image.open(io.BytesIO(sample[suffix])).size == (width, height)
        assert record["meta"], record["id"]
    assert dict(per_source) == {report.name: report.in_mixture for report in manifest.sources}
    assert len(keys) == manifest.totals.samples
    tokens = manifest.stats.tokens
    assert tokens is not None and tokens.image_tokens == 256
    assert tokens.per_sample["count"] == manifest.totals.samples
    assert tokens.per_sample["total"] == sum(summary["total"] for summary in tokens.per_source.values())
    assert tokens.per_sample["min"] >= 1
    assert manifest.strictest_terms.startswith("no redistribution")


def test_the_demo_is_byte_identical_on_local_processes_and_on_ray(ray_cluster, fixtures, tmp_path):
    data_root, _ = fixtures
    overrides = {"data_root": str(data_root), "tokens.tokenizer": str(demo_tokenizer(data_root))}
    recipe = load_recipe(REPO / "recipes" / "demo.yaml", overrides)
    outputs = {}
    for executor in ("processes", "ray"):
        out = tmp_path / executor
        manifest = build(recipe, BuildSettings(out=out, progress=False, executor=executor))
        assert manifest.build is not None and manifest.build.executor == executor
        shards = {path.name: path.read_bytes() for path in sorted((out / "shards").iterdir())}
        outputs[executor] = (manifest.content_sha256, shards, (out / "rejects.jsonl").read_bytes())
    assert sum(name.endswith(".tar") for name in outputs["ray"][1]) == len(manifest.shards) > 1
    assert outputs["processes"] == outputs["ray"]


def _playground(fixture_root: Path, data: Path) -> None:
    """Arrange fixture upstreams in the conventional InternVL `playground/data` layout."""
    shutil.copytree(fixture_root / "sharegpt4v", data)
    (data / "data" / "web-celebrity").rename(data / "web-celebrity")  # where its upstream's fetch puts it
    (data / "sharegpt4v").mkdir()
    for annotation in data.glob("*.json"):
        annotation.rename(data / "sharegpt4v" / annotation.name)
    shutil.copytree(fixture_root / "llava_zh" / "coco", data / "coco", dirs_exist_ok=True)
    (data / "llava_zh").mkdir()
    shutil.copy(fixture_root / "llava_zh" / "llava_instruct_150k_zh.json", data / "llava_zh")
    for source, folder in [
        ("dvqa", "dvqa"),
        ("chartqa", "chartqa"),
        ("ai2d", "ai2d"),
        ("docvqa", "docvqa"),
        ("geoqa_plus", "geoqa+"),
        ("synthdog_en", "synthdog-en"),
    ]:
        shutil.copytree(fixture_root / source, data / folder)
    first_shard = next((data / "synthdog-en" / "data").glob("train-00000-*.parquet"))
    for index in (2, 3, 4):  # the reference recipe reads train shards 0-4
        shutil.copy(first_shard, first_shard.with_name(f"train-0000{index}-of-00084-{index}a.parquet"))


def test_reference_recipe_plans_on_the_conventional_layout(ray_cluster, fixtures, tmp_path, capsys):
    fixture_root, facts = fixtures
    data = tmp_path / "playground" / "data"
    _playground(fixture_root, data)
    recipe = REPO / "recipes" / "internvl_chat_v1_2.yaml"
    args = ["plan", str(recipe), "--data-root", str(data), "--out", str(tmp_path / "out"), "--quiet"]
    assert main(args) == 0
    table = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in table.splitlines() if line.strip()}
    assert lines["dvqa"][-1] == str(facts["dvqa"]["expected_samples"]) and lines["dvqa"][-2] == "200,000"
    assert lines["sharegpt4v_mix665k"][-1] == str(
        facts["sharegpt4v"]["subsets"]["mix665k"]["expected_samples"]
    )
    assert not (tmp_path / "out" / "shards").exists()
    assert not (tmp_path / "out" / "manifest.json").exists()

    (data / "dvqa" / "train_qa.json").write_text("not json")  # in place (nothing fetched), unreadable
    assert main(args) == 1
    assert "dvqa" in capsys.readouterr().err
