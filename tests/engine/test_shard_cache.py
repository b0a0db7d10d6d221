"""Shards written or reused by their markers; the markers' JSON, as earlier builds wrote it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import webdataset as wds

from dataprep.contract.shards import MemberLocation, shard_index_path, tar_locations
from dataprep.contract.store import ObjectPath
from dataprep.contract.token_counts import token_sidecar_path
from dataprep.engine import shard_cache
from dataprep.engine.runner import InProcessRunner
from dataprep.engine.shard_cache import ShardJob, ShardMarker, copies_sha256, remove_stale_shards
from dataprep.files import canonical_json, sha256_file
from dataprep.shard_writer import SampleCopy

from helpers.builds import build_into, build_recipe
from helpers.upstream import write_conversations


def test_a_rerun_keeps_untouched_shards_and_rewrites_altered_ones(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    out, first = build_recipe(tmp_path, data_root)
    shards = sorted((out / "shards").glob("*.tar"))
    untouched, touched, altered = shards[0], shards[1], shards[2]
    untouched_stat = untouched.stat()
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    data = bytearray(altered.read_bytes())
    data[600] ^= 0xFF  # inside the first member's data, same size
    altered.write_bytes(bytes(data))
    _, second = build_recipe(tmp_path, data_root)
    assert second.content_sha256 == first.content_sha256
    assert [sha256_file(path) for path in shards] == [shard.sha256 for shard in first.shards]
    assert untouched.stat().st_mtime_ns == untouched_stat.st_mtime_ns  # not rewritten
    assert untouched.stat().st_ino == untouched_stat.st_ino


def test_an_image_edited_in_place_rewrites_only_the_shard_holding_it(ray_cluster, tmp_path):
    write_conversations(tmp_path / "up" / "mine")
    out, before = build_recipe(tmp_path, tmp_path / "up")
    image = tmp_path / "up/mine/images/img_001.jpg"
    data = bytearray(image.read_bytes())
    assert data[6:11] == b"JFIF\0"
    data[15] ^= 0x01  # the JFIF X density: same size, still a valid JPEG, other bytes
    mtime = image.stat().st_mtime_ns + 10**9  # a coarse clock could leave it unchanged
    image.write_bytes(bytes(data))
    os.utime(image, ns=(mtime, mtime))
    shards = sorted((out / "shards").glob("*.tar"))
    inodes = [shard.stat().st_ino for shard in shards]
    _, after = build_recipe(tmp_path, tmp_path / "up")
    _, fresh = build_recipe(tmp_path / "fresh", tmp_path / "up")
    assert [shard.sha256 for shard in after.shards] == [shard.sha256 for shard in fresh.shards]
    changed = [
        i for i, (a, b) in enumerate(zip(before.shards, after.shards, strict=True)) if a.sha256 != b.sha256
    ]
    assert len(changed) == 1
    for index, shard in enumerate(shards):  # the others are kept as they were, not rewritten
        assert index in changed or shard.stat().st_ino == inodes[index]
    holding = wds.WebDataset(str(shards[changed[0]]), shardshuffle=False)
    assert any(sample.get("jpg") == bytes(data) for sample in holding)


def test_every_shard_has_a_sidecar_index_that_a_rerun_restores(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    out, first = build_recipe(tmp_path, data_root)
    for shard in first.shards:
        index = json.loads((out / shard.index).read_bytes())
        assert index["tar_bytes"] == shard.bytes and sha256_file(out / shard.index) == shard.index_sha256
        assert [MemberLocation(*member) for member in index["members"]] == tar_locations(out / shard.path)
    shard = out / first.shards[0].path
    (out / first.shards[0].index).unlink()
    (out / first.shards[1].index).write_text('{"tar_bytes": 1, "members": []}')
    before = shard.stat().st_mtime_ns
    _, second = build_recipe(tmp_path, data_root)
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
    out, first = build_recipe(tmp_path, tmp_path / "up")

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
    _, second = build_recipe(tmp_path, tmp_path / "up")
    assert second.content_sha256 == first.content_sha256
    assert strict(markers[0])["stats"]["image_width"] == {"count": 0, "total": 0}


def test_a_shard_cut_off_before_its_marker_is_still_known_as_the_builds_own(tmp_path, monkeypatch):
    shard, marker = (
        tmp_path / "shards" / "mix-000003.tar",
        tmp_path / ".work" / "shards" / "mix-000003.tar.json",
    )

    def killed_after_the_rename(path, *args, **kwargs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"a complete shard")
        raise KeyboardInterrupt  # before its full marker

    monkeypatch.setattr(shard_cache, "write_shard", killed_after_the_rename)
    with pytest.raises(KeyboardInterrupt):
        ShardJob(shard, marker, "plan-sha", tmp_path / ".work", [], None).run()
    assert json.loads(marker.read_text()) == {"plan": "plan-sha"}
    remove_stale_shards(tmp_path, keep=set(), listed=set())  # a later, smaller plan
    assert not shard.exists() and not marker.exists()


def test_a_shards_copies_hash_is_the_one_earlier_builds_recorded_in_their_markers():
    copies = [
        SampleCopy(
            "000000_000000", "parts/a-0123/000000.tar", [["json", 512, 388], ["jpg", 1536, 90]], "5c" * 16
        ),
        SampleCopy("000000_000001", "parts/a-0123/000001.tar", [["json", 2560, 401]], "e1" * 16),
    ]
    as_before = hashlib.sha256(canonical_json([dataclasses.asdict(copy) for copy in copies])).hexdigest()
    assert copies_sha256(copies) == as_before
    as_gathered = [  # the driver keeps locations as tuples: the same JSON, so the same hash
        dataclasses.replace(copy, members=tuple(tuple(member) for member in copy.members)) for copy in copies
    ]
    assert copies_sha256(as_gathered) == as_before
    assert copies_sha256(copies[:1]) != copies_sha256([dataclasses.replace(copies[0], key="000001_000000")])


def test_a_renamed_recipe_removes_its_old_shards_and_nothing_else(ray_cluster, upstream, tmp_path):
    data_root, _ = upstream
    out = tmp_path / "out"
    build_into(tmp_path, data_root, out, name="mix")
    (out / "shards" / "mix-v2-000000.tar").write_text("another recipe's file")
    manifest = build_into(tmp_path, data_root, out, name="renamed")
    names = sorted(path.name for path in (out / "shards").iterdir())
    ours = [Path(name).name for shard in manifest.shards for name in (shard.path, shard.index)]
    assert names == sorted([*ours, "mix-v2-000000.tar"])
    assert all(name.startswith("renamed-") for name in names if name != "mix-v2-000000.tar")
    shutil.rmtree(out / ".work")  # to reclaim space: the manifest still marks the folder as a build
    again = build_into(tmp_path, data_root, out, name="renamed")
    assert again.content_sha256 == manifest.content_sha256
    shutil.rmtree(out / ".work")
    (out / "shards" / "renamed-000099.tar").write_text("a file no build wrote, in our naming")
    fewer = build_into(tmp_path, data_root, out, name="renamed", shard_size=100)
    names = sorted(path.name for path in (out / "shards").iterdir())
    ours = [Path(name).name for shard in fewer.shards for name in (shard.path, shard.index)]
    assert len(fewer.shards) < len(again.shards)  # the earlier manifest's extra shards are gone
    assert names == sorted([*ours, "mix-v2-000000.tar", "renamed-000099.tar"])


STATS = {
    "image_height": {"count": 1, "high": 48, "low": 48, "total": 48.0},
    "image_width": {"count": 0, "total": 0},
    "images_per_sample": {"count": 1, "high": 1, "low": 1, "total": 1.0},
    "text_chars": {"count": 1, "high": 29, "low": 29, "total": 29.0},
    "turns": {"count": 1, "high": 2, "low": 2, "total": 2.0},
}
MARKER = {  # as the engine before the typed marker wrote it
    "plan": "ab" * 32,
    "sha256": "cd" * 32,
    "bytes": 10240,
    "samples": 1,
    "stats": STATS,
    "index_sha256": "ef" * 32,
    "tokens_key": None,
    "tokens": None,
    "stat": [10240, 1765000000123456789],
}


@pytest.mark.parametrize(
    "fields",
    [
        MARKER,
        {
            **MARKER,
            "tokens_key": "12" * 32 + ":256",
            "tokens": {"mine": {"count": 1, "high": 9, "low": 9, "total": 9.0}},
        },
        {
            key: value
            for key, value in MARKER.items()
            if key not in ("tokens_key", "tokens", "index_sha256", "stat")
        },
    ],
    ids=["without-tokens", "with-tokens", "before-token-counts"],
)
def test_a_marker_is_read_and_written_back_as_the_same_bytes(fields):
    raw = canonical_json(fields)
    marker = ShardMarker.from_json(json.loads(raw))
    assert marker is not None and marker.copies_sha256 == fields["plan"]
    assert canonical_json(marker.to_json()) == raw


def test_a_marker_naming_only_the_copies_hash_is_no_complete_shard():
    assert ShardMarker.from_json({"plan": "ab" * 32}) is None


def test_a_rerun_in_process_reuses_every_shard_and_keeps_its_marker_bytes(upstream, tmp_path):
    data_root, _ = upstream
    out, first = build_recipe(tmp_path, data_root, runner=InProcessRunner())
    shards = sorted((out / "shards").glob("*.tar"))
    markers = sorted((out / ".work" / "shards").glob("*.json"))
    before = [(path.stat().st_ino, path.stat().st_mtime_ns) for path in shards]
    written = [marker.read_bytes() for marker in markers]
    _, second = build_recipe(tmp_path, data_root, runner=InProcessRunner())
    assert second.content_sha256 == first.content_sha256
    assert [(path.stat().st_ino, path.stat().st_mtime_ns) for path in shards] == before
    assert [marker.read_bytes() for marker in markers] == written


def _shard_jobs_of(out: Path, manifest) -> list[ShardJob]:
    """The shard jobs a re-run of this build makes, from its markers (the copies' hash recorded)."""
    jobs = []
    for shard in manifest.shards:
        marker = out / ".work" / "shards" / f"{Path(shard.path).name}.json"
        plan = json.loads(marker.read_bytes())["plan"]
        jobs.append(ShardJob(out / shard.path, marker, plan, out / ".work", [], None))
    return jobs


def test_a_complete_shard_is_known_done_without_hashing_and_anything_changed_is_left_to_the_job(
    upstream, tmp_path
):
    data_root, _ = upstream
    out, manifest = build_recipe(tmp_path, data_root, runner=InProcessRunner())
    first, second, third, *_ = _shard_jobs_of(out, manifest)
    assert first.done() == first.run() and first.done().sha256 == manifest.shards[0].sha256
    assert dataclasses.replace(first, copies_sha256="0" * 64).done() is None  # another plan
    assert dataclasses.replace(first, store=ObjectPath("s3://bucket/out")).done() is None
    os.utime(first.path, ns=(0, 0))  # its stamp changed: the job re-hashes it
    shard_index_path(second.path).write_text("[]")  # its index altered: the job rewrites it
    token_sidecar_path(third.path).write_text("{}")  # a sidecar without a tokenizer: the job drops it
    assert [job.done() for job in (first, second, third)] == [None, None, None]
    assert [job.run().sha256 for job in (first, second, third)] == [s.sha256 for s in manifest.shards[:3]]
    assert all(job.done() is not None for job in (first, second, third))


def test_a_marker_from_before_token_counts_is_reused_without_them(upstream, tmp_path):
    data_root, _ = upstream
    out, first = build_recipe(tmp_path, data_root, runner=InProcessRunner())
    marker = sorted((out / ".work" / "shards").glob("*.json"))[0]
    earlier = json.loads(marker.read_bytes())
    for key in ("tokens_key", "tokens", "index_sha256"):
        del earlier[key]
    marker.write_bytes(canonical_json(earlier))
    shard = out / first.shards[0].path
    before = shard.stat().st_mtime_ns
    _, second = build_recipe(tmp_path, data_root, runner=InProcessRunner())
    assert second.content_sha256 == first.content_sha256 and shard.stat().st_mtime_ns == before
    assert json.loads(marker.read_bytes()) == {**earlier, "index_sha256": first.shards[0].index_sha256}


def test_shard_jobs_hold_the_work_of_one_shard_and_record_its_samples(tmp_path):
    copies = [SampleCopy("000000_000000", "parts/a/000000.tar", (("json", 512, 10),), "5c" * 16)]
    job = ShardJob(tmp_path / "s.tar", tmp_path / "s.tar.json", copies_sha256(copies), tmp_path, copies, None)
    assert dataclasses.is_dataclass(job) and job.retries == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.path = tmp_path  # type: ignore[misc]
    assert job.records(dataclasses.replace(ShardMarker.from_json(MARKER), samples=7)) == 7
