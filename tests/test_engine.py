"""Full builds on a real embedded Ray cluster, read back with the independent webdataset library."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import ray
import webdataset as wds

from dataprep.engine import BuildError, BuildSettings, build, normalize, output_lock, require_inputs
from dataprep.fetch import download_key
from dataprep.fixtures.tokenizer import write_tokenizer
from dataprep.recipe import Download, RecipeError, load_recipe
from dataprep.report import summary
from dataprep.shard_writer import SampleCopy
from dataprep.shards import MemberLocation, canonical_json, sha256_file, tar_locations

from loopback_http import Site, serve
from upstream import recipe_yaml, write_conversations


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("upstream")
    facts = write_conversations(root / "mine")
    return root, facts


def _build(tmp_path: Path, data_root: Path, name: str = "mix", **kwargs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    recipe_file = tmp_path / f"{name}.yaml"
    out = tmp_path / f"out-{name}"
    recipe_file.write_text(recipe_yaml(name, data_root, out, **kwargs))
    manifest = build(load_recipe(recipe_file), BuildSettings(out=out, progress=False))
    return out, manifest


def test_build_round_trips_through_webdataset(ray_cluster, upstream, tmp_path):
    data_root, facts = upstream
    out, manifest = _build(tmp_path, data_root)

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
    out, _ = _build(tmp_path, data_root)
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {reject["id"]: reject["reason"] for reject in rejects} == facts["rejects"]
    missing = next(reject for reject in rejects if reject["id"] == "missing")
    assert "nowhere.jpg" in missing["detail"]
    assert all(reject["source"] == "mine" for reject in rejects)


def test_same_recipe_gives_identical_bytes(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    _, first = _build(tmp_path / "a", data_root)
    _, second = _build(tmp_path / "b", data_root)
    assert [shard.sha256 for shard in first.shards] == [shard.sha256 for shard in second.shards]
    assert first.content_sha256 == second.content_sha256 == second.compute_content_sha256()
    assert first.rejects_sha256 == second.rejects_sha256


def test_every_shard_carries_the_recipe_proportions(ray_cluster, upstream, tmp_path):
    data_root, facts = upstream
    twice = """  - source: conversations
    name: again
    path: mine
    file: train.jsonl
    image_root: images
    take: 5
    repeat: 3
"""
    _, manifest = _build(tmp_path, data_root, shard_size=5, extra_sources=twice)
    kept = len(facts["expected"])
    in_mixture = {source.name: source.in_mixture for source in manifest.sources}
    assert in_mixture == {"mine": kept, "again": 15}
    total = kept + 15
    for shard in manifest.shards:
        for name, count in shard.per_source.items():
            assert abs(count - in_mixture[name] * shard.samples / total) <= 1


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

    from dataprep.engine import BuildError

    data_root, _ = upstream
    marker = tmp_path / "ran"
    (data_root / "geo").mkdir(exist_ok=True)
    (data_root / "geo" / "Mix-train.pk").write_bytes(pickle.dumps([{"id": 1, "image": _Payload(marker)}]))
    recipe_file = tmp_path / "hostile.yaml"
    geo = "  - source: geoqa_plus\n    path: geo\n"
    recipe_file.write_text(recipe_yaml("hostile", data_root, tmp_path / "out", extra_sources=geo))
    with pytest.raises(BuildError, match=r"geoqa_plus unit 'Mix-train.pk'.*refused pickle global"):
        build(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=False))
    assert not marker.exists()
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not (tmp_path / "out" / "shards").exists()


def test_licence_terms_come_from_the_sources_in_the_mixture(ray_cluster, upstream, tmp_path):
    """A source left out with `take: 0` ("none stated") does not set the mixture's terms."""
    data_root, _ = upstream
    unused = "  - {source: llava_zh, name: zh, path: mine, file: train.jsonl, image_root: images, take: 0}\n"
    _, manifest = _build(tmp_path, data_root, extra_sources=unused)
    assert manifest.licences["zh"] == "none stated"
    assert manifest.strictest_terms == "user-supplied components: under their owners' terms (not checked)"


def test_a_mixture_too_large_to_plan_is_a_build_error(ray_cluster, upstream, tmp_path):
    """A typo such as `repeat: 1000000000000` ends in an error naming take/repeat, not a traceback."""
    data_root, _ = upstream
    recipe_file = tmp_path / "huge.yaml"
    recipe_file.write_text(
        recipe_yaml("huge", data_root, tmp_path / "out").replace(
            "    name: mine\n", "    name: mine\n    repeat: 1000000000000\n"
        )
    )
    with pytest.raises(
        BuildError, match=r"a mixture of [\d,]+ samples does not fit in memory: check `take` and `repeat`"
    ):
        build(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=False))
    assert not (tmp_path / "out" / "shards").exists()


def test_sources_are_fetched_over_http_before_they_are_read(ray_cluster, tmp_path):
    published = tmp_path / "published"
    facts = write_conversations(published / "mine")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for image in sorted((published / "mine/images").iterdir()):
            bundle.write(image, f"images/{image.name}")
    annotations = (published / "mine/train.jsonl").read_bytes()
    site = Site(files={"/mine/train.jsonl": annotations, "/mine/images.zip": archive.getvalue()})
    with serve(site):
        fetch = f"""    fetch:
      - {{url: "{site.url}/mine/train.jsonl", sha256: {hashlib.sha256(annotations).hexdigest()}}}
      - {{url: "{site.url}/mine/images.zip", unpack: true}}
"""
        _, manifest = _build(tmp_path, tmp_path / "fetched", extra_sources=fetch)
        _, again = _build(tmp_path, tmp_path / "fetched", extra_sources=fetch)  # nothing is downloaded
    assert sorted(site.requests) == [("/mine/images.zip", None), ("/mine/train.jsonl", None)]
    (source,) = manifest.sources
    assert source.kept == len(facts["expected"])
    assert source.rejected == dict(sorted(Counter(facts["rejects"].values()).items()))
    assert [(d.path, d.pinned, d.unpacked_files) for d in source.downloads] == [
        ("train.jsonl", True, 0),
        (
            f".fetch/{download_key(Download(url=f'{site.url}/mine/images.zip', unpack=True))}-images.zip",
            False,
            len(list((published / "mine/images").iterdir())),
        ),
    ]
    assert "fetch" not in manifest.recipe["sources"][0]  # a location, like data_root
    assert manifest.build.stages["fetch"] >= 0 and again.content_sha256 == manifest.content_sha256


@pytest.mark.parametrize(
    ("downloads", "error"),
    [
        (["{url}/a.json", "{url}/b/a.json"], "both download to"),
        (["{url}/a.json", "{url}/other.json\n        to: a.json"], "both download to"),
        (
            [
                f"{{url}}/a.json\n        sha256: '{'0' * 64}'",
                f"{{url}}/a.json\n        sha256: '{'1' * 64}'",
            ],
            "two different",
        ),
    ],
)
def test_downloads_that_would_overwrite_each_other_are_refused(
    ray_cluster, upstream, tmp_path, downloads, error
):
    data_root, _ = upstream
    fetch = "    fetch:\n" + "".join(f"      - url: {item}\n" for item in downloads)
    with serve(Site()) as site, pytest.raises(BuildError, match=error):
        _build(tmp_path, data_root, extra_sources=fetch.replace("{url}", site.url))
    assert site.requests == []


def test_a_rerun_keeps_untouched_shards_and_rewrites_altered_ones(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    out, first = _build(tmp_path, data_root)
    shards = sorted((out / "shards").glob("*.tar"))
    untouched, touched, altered = shards[0], shards[1], shards[2]
    untouched_stat = untouched.stat()
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    data = bytearray(altered.read_bytes())
    data[600] ^= 0xFF  # inside the first member's data, same size
    altered.write_bytes(bytes(data))
    _, second = _build(tmp_path, data_root)
    assert second.content_sha256 == first.content_sha256
    assert [sha256_file(path) for path in shards] == [shard.sha256 for shard in first.shards]
    assert untouched.stat().st_mtime_ns == untouched_stat.st_mtime_ns  # not rewritten
    assert untouched.stat().st_ino == untouched_stat.st_ino


def test_images_that_appear_after_a_build_are_picked_up_by_the_next(ray_cluster, tmp_path):
    write_conversations(tmp_path / "up" / "mine")
    _, before = _build(tmp_path, tmp_path / "up")
    (tmp_path / "up/mine/images/nowhere.jpg").write_bytes(
        (tmp_path / "up/mine/images/img_001.jpg").read_bytes()
    )
    _, after = _build(tmp_path, tmp_path / "up")
    (was,), (now,) = before.sources, after.sources
    assert was.rejected["image_missing"] == 1 and "image_missing" not in now.rejected
    assert now.kept == was.kept + 1 and now.read == was.read


def test_an_image_edited_in_place_rewrites_only_the_shard_holding_it(ray_cluster, tmp_path):
    write_conversations(tmp_path / "up" / "mine")
    out, before = _build(tmp_path, tmp_path / "up")
    image = tmp_path / "up/mine/images/img_001.jpg"
    data = bytearray(image.read_bytes())
    assert data[6:11] == b"JFIF\0"
    data[15] ^= 0x01  # the JFIF X density: same size, still a valid JPEG, other bytes
    mtime = image.stat().st_mtime_ns + 10**9  # a coarse clock could leave it unchanged
    image.write_bytes(bytes(data))
    os.utime(image, ns=(mtime, mtime))
    shards = sorted((out / "shards").glob("*.tar"))
    inodes = [shard.stat().st_ino for shard in shards]
    _, after = _build(tmp_path, tmp_path / "up")
    _, fresh = _build(tmp_path / "fresh", tmp_path / "up")
    assert [shard.sha256 for shard in after.shards] == [shard.sha256 for shard in fresh.shards]
    changed = [
        i for i, (a, b) in enumerate(zip(before.shards, after.shards, strict=True)) if a.sha256 != b.sha256
    ]
    assert len(changed) == 1
    for index, shard in enumerate(shards):  # the others are kept as they were, not rewritten
        assert index in changed or shard.stat().st_ino == inodes[index]
    holding = wds.WebDataset(str(shards[changed[0]]), shardshuffle=False)
    assert any(sample.get("jpg") == bytes(data) for sample in holding)


def test_a_broken_image_repaired_in_place_is_kept_by_the_next_build(ray_cluster, tmp_path):
    write_conversations(tmp_path / "up" / "mine")
    _, before = _build(tmp_path, tmp_path / "up")
    good = (tmp_path / "up/mine/images/img_001.jpg").read_bytes()
    (tmp_path / "up/mine/images/truncated.jpg").write_bytes(good)
    _, after = _build(tmp_path, tmp_path / "up")
    (was,), (now,) = before.sources, after.sources
    assert was.rejected["image_truncated"] == 1 and "image_truncated" not in now.rejected
    assert now.kept == was.kept + 1


def _token_totals_read_back(out: Path, tokenizer: Path, image_tokens: int) -> Counter:
    """Tokens per source, counted independently over the shards read with webdataset."""
    from tokenizers import Tokenizer

    encoder = Tokenizer.from_file(str(tokenizer))
    totals: Counter = Counter()
    dataset = wds.WebDataset(
        [str(path) for path in sorted((out / "shards").glob("*.tar"))], shardshuffle=False
    )
    for sample in dataset:
        record = json.loads(sample["json"])
        for turn in record["conversations"]:
            text = turn["value"].replace("<image>", "")
            totals[record["source"]] += len(encoder.encode(text, add_special_tokens=False).ids)
        totals[record["source"]] += image_tokens * len(record["images"])
    return totals


def test_token_statistics_match_the_shards_and_follow_the_tokenizer_settings(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    texts = (data_root / "mine" / "train.jsonl").read_text().splitlines()
    tokenizer = write_tokenizer(tmp_path / "tokenizer" / "tokenizer.json", texts)
    tokens = f"tokens: {{tokenizer: {tokenizer.parent}, image_tokens: 0}}"
    out, plain = _build(tmp_path, data_root, extra=tokens)
    stats = plain.stats.tokens
    assert stats is not None and stats.tokenizer_sha256 == sha256_file(tokenizer)
    expected = _token_totals_read_back(out, tokenizer, 0)
    assert {name: summary["total"] for name, summary in stats.per_source.items()} == dict(expected)
    assert stats.per_sample["total"] == sum(expected.values())
    assert stats.per_sample["count"] == plain.totals.samples

    shards = sorted((out / "shards").glob("*.tar"))
    before = [(path.stat().st_ino, path.stat().st_mtime_ns) for path in shards]
    _, counted = _build(tmp_path, data_root, extra=tokens.replace("image_tokens: 0", "image_tokens: 256"))
    assert [(path.stat().st_ino, path.stat().st_mtime_ns) for path in shards] == before  # re-counted only
    assert [shard.sha256 for shard in counted.shards] == [shard.sha256 for shard in plain.shards]
    read_back = wds.WebDataset([str(p) for p in shards], shardshuffle=False)
    images = sum(len(json.loads(sample["json"])["images"]) for sample in read_back)
    assert counted.stats.tokens.per_sample["total"] == stats.per_sample["total"] + 256 * images
    assert images > 0

    _, without = _build(tmp_path, data_root)
    assert without.stats.tokens is None
    assert [shard.sha256 for shard in without.shards] == [shard.sha256 for shard in plain.shards]


def test_a_recipe_naming_a_missing_tokenizer_is_refused_with_its_field(upstream, tmp_path):
    data_root, _ = upstream
    recipe_file = tmp_path / "r.yaml"
    extra = f"tokens: {{tokenizer: {tmp_path / 'nowhere'}}}"
    recipe_file.write_text(recipe_yaml("r", data_root, tmp_path / "out", extra=extra))
    with pytest.raises(RecipeError, match=r"r\.yaml:7: tokens\.tokenizer: .*nowhere.* does not exist"):
        load_recipe(recipe_file)


def _build_into(tmp_path: Path, data_root: Path, out: Path, name: str = "mix", **kwargs):
    recipe_file = tmp_path / f"{name}-{out.name}.yaml"
    recipe_file.write_text(recipe_yaml(name, data_root, out, **kwargs))
    return build(load_recipe(recipe_file), BuildSettings(out=out, progress=False))


def test_a_folder_holding_other_files_is_refused_and_left_as_it_was(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    mine = tmp_path / "mine"
    (mine / "shards").mkdir(parents=True)
    for name in ("manifest.json", "rejects.jsonl", "shards/mix-000000.tar", "shards/notes.partial"):
        (mine / name).write_text("precious")
    with pytest.raises(BuildError, match="not empty and holds no dataprep build"):
        _build_into(tmp_path, data_root, mine)
    assert sorted(p.read_text() for p in mine.rglob("*") if p.is_file()) == ["precious"] * 4
    with pytest.raises(BuildError, match="inside the folder of source mine"):
        _build_into(tmp_path, data_root, data_root / "mine" / "out")
    assert not (data_root / "mine" / "out").exists()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(BuildError, match="is not a folder"):
        _build_into(tmp_path, data_root, tmp_path / "a-file")


def test_parts_left_incomplete_by_a_killed_discard_are_normalized_again(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    out, first = _build(tmp_path, data_root)
    tars = sorted((out / ".work" / "parts").glob("*/*.tar"))
    tars[0].unlink()  # `--discard-parts` killed half-way: some files gone, some indexes still there
    tars[-1].with_suffix(".inputs.json").unlink()
    (out / ".work" / "parts.discarded").mkdir()
    _, second = _build(tmp_path, data_root)
    assert second.content_sha256 == first.content_sha256 and tars[0].exists()
    discarded = build(
        load_recipe(tmp_path / "mix.yaml"), BuildSettings(out=out, progress=False, discard_parts=True)
    )
    assert discarded.content_sha256 == first.content_sha256
    assert not (out / ".work" / "parts").exists() and not (out / ".work" / "parts.discarded").exists()


def test_a_relative_output_folder_is_made_absolute_for_workers_that_run_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert BuildSettings(out=Path("out/demo")).out == tmp_path / "out" / "demo"


def test_a_renamed_recipe_removes_its_old_shards_and_nothing_else(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    out = tmp_path / "out"
    _build_into(tmp_path, data_root, out, name="mix")
    (out / "shards" / "mix-v2-000000.tar").write_text("another recipe's file")
    manifest = _build_into(tmp_path, data_root, out, name="renamed")
    names = sorted(path.name for path in (out / "shards").iterdir())
    ours = [Path(name).name for shard in manifest.shards for name in (shard.path, shard.index)]
    assert names == sorted([*ours, "mix-v2-000000.tar"])
    assert all(name.startswith("renamed-") for name in names if name != "mix-v2-000000.tar")
    shutil.rmtree(out / ".work")  # to reclaim space: the manifest still marks the folder as a build
    again = _build_into(tmp_path, data_root, out, name="renamed")
    assert again.content_sha256 == manifest.content_sha256
    shutil.rmtree(out / ".work")
    (out / "shards" / "renamed-000099.tar").write_text("a file no build wrote, in our naming")
    fewer = _build_into(tmp_path, data_root, out, name="renamed", shard_size=100)
    names = sorted(path.name for path in (out / "shards").iterdir())
    ours = [Path(name).name for shard in fewer.shards for name in (shard.path, shard.index)]
    assert len(fewer.shards) < len(again.shards)  # the earlier manifest's extra shards are gone
    assert names == sorted([*ours, "mix-v2-000000.tar", "renamed-000099.tar"])


def test_a_build_that_fails_before_writing_shards_keeps_the_previous_manifest(
    ray_cluster, upstream, tmp_path
):
    data_root, _ = upstream
    out = tmp_path / "out"
    first = _build_into(tmp_path, data_root, out)
    broken = recipe_yaml("mix", data_root, out).replace("file: train.jsonl", "file: absent.jsonl")
    (tmp_path / "broken.yaml").write_text(broken)
    with pytest.raises(BuildError, match="required inputs are missing"):
        build(load_recipe(tmp_path / "broken.yaml"), BuildSettings(out=out, progress=False))
    assert json.loads((out / "manifest.json").read_text())["content_sha256"] == first.content_sha256
    with output_lock(out), pytest.raises(BuildError, match="another build is writing to"):
        _build_into(tmp_path, data_root, out)


def test_an_input_that_is_a_pipe_a_folder_or_a_link_loop_fails_the_build_before_it_is_hashed(
    upstream, tmp_path
):
    data_root, _ = upstream
    os.mkfifo(tmp_path / "pipe.jsonl")  # hashing it would wait for a writer forever
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "questions").mkdir()
    (tmp_path / "questions" / "0.png.json").symlink_to("0.png.json")  # a loop: found by a glob
    extra = "".join(
        f"  - {{source: conversations, name: {name}, path: {tmp_path}, file: {name}.jsonl}}\n"
        for name in ("pipe", "folder")
    )
    extra += f"  - {{source: ai2d, name: loop, path: {tmp_path}}}\n"
    (tmp_path / "odd.yaml").write_text(recipe_yaml("odd", data_root, tmp_path / "out", extra_sources=extra))
    with pytest.raises(BuildError) as caught:
        require_inputs(load_recipe(tmp_path / "odd.yaml"))
    assert str(caught.value) == (
        "required inputs are not files:\n"
        f"pipe: {tmp_path / 'pipe.jsonl'} is a named pipe, not a file\n"
        f"folder: {tmp_path / 'folder.jsonl'} is a folder, not a file\n"
        f"loop: {tmp_path / 'questions' / '0.png.json'} cannot be opened: Too many levels of symbolic links"
    )


def test_every_shard_has_a_sidecar_index_that_a_rerun_restores(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    out, first = _build(tmp_path, data_root)
    for shard in first.shards:
        index = json.loads((out / shard.index).read_bytes())
        assert index["tar_bytes"] == shard.bytes and sha256_file(out / shard.index) == shard.index_sha256
        assert [MemberLocation(*member) for member in index["members"]] == tar_locations(out / shard.path)
    shard = out / first.shards[0].path
    (out / first.shards[0].index).unlink()
    (out / first.shards[1].index).write_text('{"tar_bytes": 1, "members": []}')
    before = shard.stat().st_mtime_ns
    _, second = _build(tmp_path, data_root)
    assert second.content_sha256 == first.content_sha256
    assert shard.stat().st_mtime_ns == before  # the shard is kept, only its index rewritten
    assert all(sha256_file(out / s.index) == s.index_sha256 for s in second.shards)


def test_markers_of_text_only_shards_stay_strict_json_also_when_an_earlier_version_wrote_them(
    ray_cluster, tmp_path
):
    root = tmp_path / "up" / "mine"
    (root / "images").mkdir(parents=True)
    turns = [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "hi"}]
    (root / "train.jsonl").write_text(
        "".join(json.dumps({"id": f"t{i}", "conversations": turns}) + "\n" for i in range(6))
    )
    out, first = _build(tmp_path, tmp_path / "up")

    def strict(marker: Path) -> dict:
        return json.loads(marker.read_bytes(), parse_constant=lambda name: pytest.fail(f"{marker}: {name}"))

    markers = sorted((out / ".work" / "shards").glob("*.json"))
    assert len(markers) == len(first.shards) == 2
    assert all(strict(marker)["stats"]["image_width"] == {"count": 0, "total": 0} for marker in markers)
    earlier = strict(markers[0])  # as written before: the empty bounds as Infinity / -Infinity
    earlier["stats"]["image_width"].update(low=float("inf"), high=float("-inf"))
    markers[0].write_text(json.dumps(earlier))
    shard = out / first.shards[0].path
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    _, second = _build(tmp_path, tmp_path / "up")
    assert second.content_sha256 == first.content_sha256
    assert strict(markers[0])["stats"]["image_width"] == {"count": 0, "total": 0}


def test_progress_counts_records_read_and_samples_written(ray_cluster, upstream, tmp_path, capsys):
    data_root, _ = upstream
    recipe_file = tmp_path / "mix.yaml"
    recipe_file.write_text(recipe_yaml("mix", data_root, tmp_path / "out"))
    manifest = build(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=True))
    lines = {
        line.split("]")[0] + "]": line
        for line in capsys.readouterr().err.replace("\n", "\r").split("\r")
        if line
    }
    assert f" {manifest.totals.read} records" in lines["[normalize]"]
    assert f" {manifest.totals.samples} records" in lines["[write]"]


def test_a_file_an_adapter_cannot_list_units_from_is_a_build_error_naming_the_source(ray_cluster, tmp_path):
    from dataprep.fixtures import synthdog_en

    synthdog_en.generate(tmp_path / "up" / "synthdog_en", seed=0)
    shard = sorted((tmp_path / "up" / "synthdog_en" / "data").glob("train-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:3000])
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        f"name: cut\ndata_root: {tmp_path / 'up'}\noutput: {{dir: {tmp_path / 'out'}}}\n"
        "sources:\n  - source: synthdog_en\n    path: synthdog_en\n    shards: [0]\n"
    )
    with pytest.raises(
        BuildError,
        match=r"synthdog_en: cannot list its work units: .*train-00000-of-00084-\w+\.parquet: not a readable parquet file",
    ):
        build(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=False))


@pytest.mark.parametrize("files", ["[train.jsonl, ./train.jsonl]", "[train.jsonl, train.jsonl]"])
def test_an_input_named_twice_is_a_build_error_not_read_twice(upstream, tmp_path, files):
    data_root, _ = upstream
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        recipe_yaml("twice", data_root, tmp_path / "out").replace("file: train.jsonl", f"files: {files}")
    )
    with pytest.raises(BuildError, match=r"mine: its options name .*train.jsonl twice"):
        normalize(load_recipe(recipe_file), BuildSettings(out=tmp_path / "out", progress=False))


def _interrupted_session(tmp_path: Path, before: str, inside: str) -> subprocess.CompletedProcess[bytes]:
    """Run `before`, then a Ray session with `inside` in it, in a fresh process that exits 3 when
    the session ends in KeyboardInterrupt."""
    script = (
        "import os, signal, sys, threading, time\n"
        "from pathlib import Path\n"
        "from dataprep.engine import BuildSettings, ray_session\n"
        f"{before}"
        "try:\n"
        f"    with ray_session(BuildSettings(out=Path({str(tmp_path)!r}), workers=1)):\n"
        f"{inside}"
        "        time.sleep(30)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)


def test_sigterm_stops_a_build_as_ctrl_c_does(tmp_path):
    done = _interrupted_session(tmp_path, "", "        os.kill(os.getpid(), signal.SIGTERM)\n")
    assert done.returncode == 3, done.stderr.decode()[-2000:]


def test_sigterm_while_ray_starts_stops_a_build_as_ctrl_c_does(tmp_path):
    """Ray's `init` installs its own SIGTERM handler (exit 15, silently) for as long as it runs."""
    before = (
        "def term_once_ray_handles_it():\n"
        "    while 'sigterm_handler' not in getattr(signal.getsignal(signal.SIGTERM), '__qualname__', ''):\n"
        "        time.sleep(0.001)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "threading.Thread(target=term_once_ray_handles_it, daemon=True).start()\n"
    )
    done = _interrupted_session(tmp_path, before, "")
    assert done.returncode == 3, done.stderr.decode()[-2000:]


def test_a_shard_cut_off_before_its_marker_is_still_known_as_the_builds_own(tmp_path, monkeypatch):
    from dataprep import engine

    shard, marker = (
        tmp_path / "shards" / "mix-000003.tar",
        tmp_path / ".work" / "shards" / "mix-000003.tar.json",
    )

    def killed_after_the_rename(path, *args):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"a complete shard")
        raise KeyboardInterrupt  # before its full marker

    monkeypatch.setattr(engine, "write_shard", killed_after_the_rename)
    with pytest.raises(KeyboardInterrupt):
        engine._write_or_reuse(shard, marker, "plan-sha", tmp_path / ".work", [], None)
    assert json.loads(marker.read_text()) == {"plan": "plan-sha"}
    engine._remove_stale_shards(tmp_path, keep=set(), listed=set())  # a later, smaller plan
    assert not shard.exists() and not marker.exists()


def test_a_shards_plan_hash_is_the_one_earlier_builds_recorded_in_their_markers():
    from dataprep.engine import plan_sha256

    copies = [
        SampleCopy(
            "000000_000000", "parts/a-0123/000000.tar", [["json", 512, 388], ["jpg", 1536, 90]], "5c" * 16
        ),
        SampleCopy("000000_000001", "parts/a-0123/000001.tar", [["json", 2560, 401]], "e1" * 16),
    ]
    as_before = hashlib.sha256(canonical_json([dataclasses.asdict(copy) for copy in copies])).hexdigest()
    assert plan_sha256(copies) == as_before
    as_gathered = [  # the driver keeps locations as tuples: the same JSON, so the same hash
        dataclasses.replace(copy, members=tuple(tuple(member) for member in copy.members)) for copy in copies
    ]
    assert plan_sha256(as_gathered) == as_before
    assert plan_sha256(copies[:1]) != plan_sha256([dataclasses.replace(copies[0], key="000001_000000")])


def test_the_collector_paused_while_samples_are_gathered_is_restored_even_on_an_error():
    from dataprep.engine import _gc_paused

    with pytest.raises(KeyError), _gc_paused():
        assert not gc.isenabled()
        raise KeyError("a failed gather")
    assert gc.isenabled()
    gc.disable()
    try:
        with _gc_paused():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def test_units_failing_alike_are_reported_once_with_their_count(ray_cluster):
    """A full disk fails every unit with one error: the build says so in one line, not one per unit."""
    from dataprep import engine

    def _write_one_byte(path: str) -> None:  # defined here: workers cannot import test modules
        with open(path, "wb") as handle:
            handle.write(b"x")  # into /dev/full: "No space left on device" when flushed

    task = ray.remote(max_retries=0)(engine._plain_errors(_write_one_byte))
    jobs = [(f"unit {i}", lambda: task.remote("/dev/full")) for i in range(5)]
    jobs.append(("unit odd", lambda: task.remote("/dev/null/x")))
    with pytest.raises(BuildError) as failed:
        engine._run("normalize", jobs, BuildSettings(out=Path("out"), workers=2, progress=False))
    heading, *lines = str(failed.value).splitlines()
    assert heading == "normalize failed for 6 of 6 units:" and len(lines) == 2
    assert any(
        re.fullmatch(r"unit \d: OSError: \[Errno 28\] No space left on device \(and 4 more units\)", line)
        for line in lines
    )
    assert "unit odd: NotADirectoryError: [Errno 20] Not a directory: '/dev/null/x'" in lines
