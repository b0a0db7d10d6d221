"""Deterministic tar writing: same members, same bytes; the standard tar reader agrees."""

from __future__ import annotations

import tarfile

import pytest

from dataprep.contract.shards import (
    MemberLocation,
    iter_samples,
    member_locations,
    read_at,
    shard_index_path,
    tar_locations,
    write_shard_index,
    write_tar,
)
from dataprep.files import canonical_json


def test_same_members_same_bytes_and_offsets(tmp_path):
    members = [("k1.json", b'{"images":["jpg"]}'), ("k1.jpg", b"\xff\xd8abc"), ("k2.json", b'{"images":[]}')]
    first = write_tar(tmp_path / "a.tar", members)
    second = write_tar(tmp_path / "b.tar", members)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert first == second
    for location, (_, data) in zip(first, members, strict=True):
        assert read_at(tmp_path / "a.tar", location) == data
    with tarfile.open(tmp_path / "a.tar") as archive:
        infos = archive.getmembers()
    assert [info.name for info in infos] == [name for name, _ in members]
    assert {(info.mtime, info.uid, info.gid, info.mode, info.uname) for info in infos} == {
        (0, 0, 0, 0o644, "")
    }
    assert not list(tmp_path.glob("*.partial"))


def test_iter_samples_groups_members(tmp_path):
    write_tar(
        tmp_path / "s.tar",
        [("a.json", b'{"images":["0.jpg","1.png"]}'), ("a.0.jpg", b"x"), ("a.1.png", b"y")],
    )
    ((key, record, images),) = list(iter_samples(tmp_path / "s.tar"))
    assert key == "a" and record["images"] == ["0.jpg", "1.png"] and images == {"0.jpg": b"x", "1.png": b"y"}


@pytest.mark.parametrize(
    "members",
    [
        [("a.json", b'{"images":["jpg"]}'), ("a.jpg", b"x"), ("a.png", b"extra")],
        [("a.json", b'{"images":["jpg","jpg"]}'), ("a.jpg", b"x")],
    ],
)
def test_a_sample_whose_members_are_not_its_images_is_refused(tmp_path, members):
    write_tar(tmp_path / "s.tar", members)
    with pytest.raises(ValueError, match=r"sample a: members \[.*\] are not its images"):
        list(iter_samples(tmp_path / "s.tar"))


def test_read_at_detects_truncation(tmp_path):
    (tmp_path / "t.tar").write_bytes(b"short")
    with pytest.raises(OSError, match="truncated"):
        read_at(tmp_path / "t.tar", MemberLocation("x", 2, 10))


def test_tar_locations_match_what_was_written(tmp_path):
    members = [("a.json", b"{}"), ("a.jpg", b"\xff" * 700), ("b.json", b"[]")]
    written = write_tar(tmp_path / "s.tar", members)
    assert tar_locations(tmp_path / "s.tar") == written


def test_the_sidecar_index_gives_the_locations_while_it_matches_the_shard(tmp_path):
    members = [("a.json", b"{}"), ("a.jpg", b"\xff" * 700), ("b.json", b"[]")]
    shard = tmp_path / "s-000000.tar"
    written = write_tar(shard, members)
    assert write_shard_index(shard, written) == tmp_path / "s-000000.idx.json"
    assert member_locations(shard) == written
    # a sidecar of another file of the same name is ignored: the tar headers are read instead
    shard_index_path(shard).write_bytes(canonical_json({"tar_bytes": 1, "members": [["x.json", 0, 1]]}))
    assert member_locations(shard) == written
    shard_index_path(shard).unlink()
    assert member_locations(shard) == written
