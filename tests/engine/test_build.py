"""Whole builds on a real embedded Ray cluster (and in process), read back with the independent webdataset library."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import webdataset as wds

from dataprep.contract.manifest import Manifest
from dataprep.contract.token_counts import read_token_sidecar
from dataprep.engine.runner import BuildError, InProcessRunner
from dataprep.files import sha256_file
from dataprep.fixtures.draw import encode, photo
from dataprep.fixtures.tokenizer import write_tokenizer
from dataprep.recipe.load import RecipeError, load_recipe

from helpers.builds import build_recipe
from helpers.upstream import recipe_yaml


def test_build_round_trips_through_webdataset(ray_cluster, upstream, tmp_path):
    data_root, facts = upstream
    out, manifest = build_recipe(tmp_path, data_root)

    urls = [str(out / shard.path) for shard in manifest.shards]
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    seen = Counter()
    for sample in dataset:
        record = json.loads(sample["json"])
        expected = facts["expected"][record["id"]]
        seen[record["id"]] += 1
        assert record["source"] == "mine"
        assert record["conversations"] == expected["conversations"]
        assert [sample[suffix] for suffix in record["images"]] == expected["images"]
        assert "." not in sample["__key__"]
    assert seen == Counter(facts["expected"].keys())

    (source,) = manifest.sources
    assert source.kept == len(facts["expected"]) == manifest.totals.samples
    assert source.rejected == dict(sorted(Counter(facts["rejects"].values()).items()))
    assert source.read == source.kept + len(facts["rejects"])
    assert all(shard.samples <= 4 for shard in manifest.shards)
    assert sum(shard.samples for shard in manifest.shards) == manifest.totals.samples


def test_rejects_file_names_each_bad_record(ray_cluster, upstream, tmp_path):
    data_root, facts = upstream
    out, _ = build_recipe(tmp_path, data_root)
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {reject["id"]: reject["reason"] for reject in rejects} == facts["rejects"]
    missing = next(reject for reject in rejects if reject["id"] == "missing")
    assert "nowhere.jpg" in missing["detail"]
    assert all(reject["source"] == "mine" for reject in rejects)


def test_same_recipe_gives_identical_bytes(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    _, first = build_recipe(tmp_path / "a", data_root)
    _, second = build_recipe(tmp_path / "b", data_root)
    assert [shard.sha256 for shard in first.shards] == [shard.sha256 for shard in second.shards]
    assert first.content_sha256 == second.content_sha256 == second.compute_content_sha256()
    assert first.rejects_sha256 == second.rejects_sha256


def test_token_statistics_match_the_shards_and_follow_the_tokenizer_settings(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    texts = (data_root / "mine" / "train.jsonl").read_text().splitlines()
    tokenizer = write_tokenizer(tmp_path / "tokenizer" / "tokenizer.json", texts)
    tokens = f"tokens: {{tokenizer: {tokenizer.parent}, image_tokens: 0}}"
    out, plain = build_recipe(tmp_path, data_root, extra=tokens)
    stats = plain.stats.tokens
    assert stats is not None and stats.tokenizer_sha256 == sha256_file(tokenizer)
    expected = _tokens_read_back(out, tokenizer, 0)
    per_source = Counter()
    for (source, _key), count in expected.items():
        per_source[source] += count
    assert {name: summary["total"] for name, summary in stats.per_source.items()} == dict(per_source)
    assert stats.per_sample["total"] == sum(expected.values())
    assert stats.per_sample["count"] == plain.totals.samples
    assert _sidecar_counts(out, plain, tokenizer, 0) == {key: count for (_, key), count in expected.items()}

    shards = sorted((out / "shards").glob("*.tar"))
    before = [(path.stat().st_ino, path.stat().st_mtime_ns) for path in shards]
    _, counted = build_recipe(
        tmp_path, data_root, extra=tokens.replace("image_tokens: 0", "image_tokens: 256")
    )
    assert [(path.stat().st_ino, path.stat().st_mtime_ns) for path in shards] == before  # re-counted only
    assert [shard.sha256 for shard in counted.shards] == [shard.sha256 for shard in plain.shards]
    read_back = wds.WebDataset([str(p) for p in shards], shardshuffle=False)
    images = sum(len(json.loads(sample["json"])["images"]) for sample in read_back)
    assert counted.stats.tokens.per_sample["total"] == stats.per_sample["total"] + 256 * images
    assert images > 0
    with_images = {key: count for (_, key), count in _tokens_read_back(out, tokenizer, 256).items()}
    assert _sidecar_counts(out, counted, tokenizer, 256) == with_images

    _, without = build_recipe(tmp_path, data_root)
    assert without.stats.tokens is None
    assert [shard.sha256 for shard in without.shards] == [shard.sha256 for shard in plain.shards]
    assert all(shard.tokens is None and shard.tokens_sha256 is None for shard in without.shards)
    assert not list((out / "shards").glob("*.tokens.json"))


def test_a_token_sidecar_deleted_or_edited_after_the_build_is_counted_again(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    texts = (data_root / "mine" / "train.jsonl").read_text().splitlines()
    tokenizer = write_tokenizer(tmp_path / "tokenizer.json", texts)
    tokens = f"tokens: {{tokenizer: {tokenizer}, image_tokens: 8}}"
    out, first = build_recipe(tmp_path, data_root, extra=tokens)
    sidecars = [out / shard.tokens for shard in first.shards]
    written = [path.read_bytes() for path in sidecars]
    sidecars[0].unlink()
    sidecars[1].write_bytes(b"{}")
    _, second = build_recipe(tmp_path, data_root, extra=tokens)
    assert [path.read_bytes() for path in sidecars] == written
    assert second.content_sha256 == first.content_sha256


def _sidecar_counts(out: Path, manifest: Manifest, tokenizer: Path, image_tokens: int) -> dict[str, int]:
    """Every shard's token sidecar, checked against the manifest and the tokenizer, merged by key."""
    counts: dict[str, int] = {}
    for shard in manifest.shards:
        assert shard.tokens == shard.path.removesuffix(".tar") + ".tokens.json"
        assert sha256_file(out / shard.tokens) == shard.tokens_sha256
        sidecar = read_token_sidecar(out / shard.tokens)
        assert (sidecar.tokenizer_sha256, sidecar.image_tokens) == (sha256_file(tokenizer), image_tokens)
        assert len(sidecar.tokens) == shard.samples
        counts.update(sidecar.tokens)
    return counts


def _tokens_read_back(out: Path, tokenizer: Path, image_tokens: int) -> dict[tuple[str, str], int]:
    """Tokens per (source, sample key), counted independently over the shards read with webdataset."""
    from tokenizers import Tokenizer

    encoder = Tokenizer.from_file(str(tokenizer))
    counts: dict[tuple[str, str], int] = {}
    dataset = wds.WebDataset(
        [str(path) for path in sorted((out / "shards").glob("*.tar"))], shardshuffle=False
    )
    for sample in dataset:
        record = json.loads(sample["json"])
        text = sum(
            len(encoder.encode(turn["value"].replace("<image>", ""), add_special_tokens=False).ids)
            for turn in record["conversations"]
        )
        counts[record["source"], sample["__key__"]] = text + image_tokens * len(record["images"])
    return counts


def test_a_recipe_naming_a_missing_tokenizer_is_refused_with_its_field(upstream, tmp_path):
    data_root, _ = upstream
    recipe_file = tmp_path / "r.yaml"
    extra = f"tokens: {{tokenizer: {tmp_path / 'nowhere'}}}"
    recipe_file.write_text(recipe_yaml("r", data_root, tmp_path / "out", extra=extra))
    with pytest.raises(RecipeError, match=r"r\.yaml:7: tokens\.tokenizer: .*nowhere.* does not exist"):
        load_recipe(recipe_file)


def test_a_build_in_process_writes_the_bytes_of_a_build_on_ray(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    out, on_ray = build_recipe(tmp_path / "ray", data_root)
    here, in_process = build_recipe(tmp_path / "here", data_root, runner=InProcessRunner())
    assert in_process.content_sha256 == on_ray.content_sha256
    assert [shard.sha256 for shard in in_process.shards] == [shard.sha256 for shard in on_ray.shards]
    assert (here / "rejects.jsonl").read_bytes() == (out / "rejects.jsonl").read_bytes()


class _EditingAtWrite(InProcessRunner):
    """In process; `image` is rewritten with `data` once every sample is checked, as the shards start
    (a file edited while a build runs)."""

    def __init__(self, image: Path, data: bytes) -> None:
        super().__init__()
        self.image, self.data = image, data

    def run(self, stage, jobs, total, measure=None):
        if stage == "write":
            self.image.write_bytes(self.data)
        return super().run(stage, jobs, total, measure)


def test_an_image_file_edited_after_its_check_fails_its_shard_and_is_checked_again_next_build(
    upstream, tmp_path
):
    data_root = tmp_path / "data"
    shutil.copytree(upstream[0], data_root)
    image = data_root / "mine" / "images" / "img_000.png"  # kept as it is: its part refers to the file
    edited = encode(photo(random.Random(1)), "PNG")
    with pytest.raises(BuildError, match=r"img_000\.png: the image file changed after it was checked"):
        build_recipe(tmp_path, data_root, runner=_EditingAtWrite(image, edited))
    out = tmp_path / "out-mix"
    assert not (out / "manifest.json").exists() and not list((out / "shards").glob("*.partial"))

    _, manifest = build_recipe(tmp_path, data_root, runner=InProcessRunner())
    urls = [str(out / shard.path) for shard in manifest.shards]
    samples = {
        json.loads(s["json"])["id"]: s for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    }
    assert samples["good-0"]["png"] == edited  # checked again, and copied as it is now
