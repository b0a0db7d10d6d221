"""Locations: local paths, `file://` URLs, store URLs read through pyarrow on a loopback S3 server,
and every other scheme refused."""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath

import pytest

from dataprep.contract.manifest import ManifestError, load_manifest
from dataprep.contract.sample import ShardSample, Turn
from dataprep.contract.shards import iter_samples, member_locations, read_at, tar_locations, write_samples
from dataprep.contract.store import LocationError, ObjectPath, location


def test_paths_and_file_urls_are_local_and_store_urls_are_objects(tmp_path):
    assert location("out/demo") == Path("out/demo")
    assert location(tmp_path) is tmp_path
    assert location(f"file://{tmp_path}/a b") == tmp_path / "a b"
    assert location("s3://bucket/a/b/") == ObjectPath("s3://bucket/a/b")
    assert location("gcs://bucket") == ObjectPath("gcs://bucket")
    assert location(ObjectPath("s3://b/k")) == ObjectPath("s3://b/k")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("s4://bucket/x", "unsupported scheme s4://"),
        ("http://example.org/x", "unsupported scheme http://"),
        ("s3:/bucket/x", "needs two slashes"),
        ("s3://", "expected s3://<bucket>/<key>"),
        ("s3://bucket/a/../b", "expected s3://<bucket>/<key>"),
        ("s3://bucket/a?region=x", "options in the URL"),
        ("file://host/x", "file:///path"),
    ],
)
def test_other_locations_are_refused_naming_them(text, says):
    with pytest.raises(LocationError, match=says) as caught:
        location(text)
    assert text in str(caught.value)


def test_object_paths_join_and_split_like_paths():
    shard = ObjectPath("s3://bucket/builds/demo") / "shards/demo-000000.tar"
    assert shard.url == "s3://bucket/builds/demo/shards/demo-000000.tar"
    assert (shard.name, shard.parent.name, shard.bucket) == (
        "demo-000000.tar",
        "shards",
        ObjectPath("s3://bucket"),
    )
    assert shard.with_name("x.idx.json") == ObjectPath("s3://bucket/builds/demo/shards/x.idx.json")
    assert shard.relative_to(ObjectPath("s3://bucket/builds")) == PurePosixPath("demo/shards/demo-000000.tar")
    assert ObjectPath("s3://bucket").parent == ObjectPath("s3://bucket")
    with pytest.raises(ValueError, match="not under"):
        shard.relative_to(ObjectPath("s3://bucket/other"))


def _sample(source: str) -> ShardSample:
    return ShardSample(source, "1", ["jpg"], [[1, 1]], [Turn("human", "<image>\nq"), Turn("gpt", "a")], {})


def test_objects_read_as_their_local_files(s3, tmp_path):
    s3.create_bucket("contract")
    shard = tmp_path / "s.tar"
    write_samples(shard, [("a", _sample("x"), [b"\xff" * 3000]), ("b", _sample("y"), [b"\x01" * 10])])
    for name in ("s.tar", "s.idx.json"):
        s3.put(f"contract/build/shards/{name}", (tmp_path / name).read_bytes())
    remote = ObjectPath("s3://contract/build") / "shards/s.tar"

    assert remote.exists() and remote.parent.is_dir() and not remote.is_dir()
    assert remote.stat().st_size == shard.stat().st_size
    assert remote.read_bytes() == shard.read_bytes()
    assert sorted(path.name for path in remote.parent.iterdir()) == ["s.idx.json", "s.tar"]
    assert tar_locations(remote) == tar_locations(shard) == member_locations(remote)
    location_b = member_locations(shard)[-1]
    assert read_at(remote, location_b) == b"\x01" * 10
    assert [key for key, _, _ in iter_samples(remote)] == ["a", "b"]
    with remote.open("rb", buffering=0) as raw:
        assert isinstance(raw, io.RawIOBase) and raw.seek(location_b.offset) == location_b.offset
        assert raw.read(location_b.size) == b"\x01" * 10

    missing = remote.with_name("gone.tar")
    assert not missing.exists()
    with pytest.raises(FileNotFoundError):
        missing.stat()
    with pytest.raises(ManifestError, match=r"cannot read manifest s3://contract/build/manifest\.json"):
        load_manifest("s3://contract/build/manifest.json")
    with pytest.raises(ValueError, match="reading only"):
        remote.open("wb")
