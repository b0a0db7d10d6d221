"""Deterministic tar writing: same members, same bytes; the standard tar reader agrees."""

from __future__ import annotations

import hashlib
import io
import itertools
import random
import tarfile
from pathlib import Path

import pytest

from dataprep.contract.sample import SampleError, ShardSample, Turn
from dataprep.contract.shards import (
    WRITEBACK_BYTES,
    MemberLocation,
    MemberReader,
    _after,
    _Writer,
    group_samples,
    index_differs,
    iter_samples,
    iter_tar,
    member_locations,
    read_at,
    shard_index_path,
    start_writeback,
    tar_locations,
    write_samples,
    write_shard_index,
    write_tar,
)
from dataprep.files import canonical_json, sha256_file


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


def sample(images: list[str]) -> ShardSample:
    placeholders = "<image>" * len(images)
    turns = [Turn("human", placeholders + "q"), Turn("gpt", "a")]
    return ShardSample("src", "id", images, [[1, 1]] * len(images), turns, {})


@pytest.mark.parametrize("seed", range(6))
def test_written_tars_are_the_bytes_pythons_tarfile_writes(tmp_path, seed):
    """Members of every size around the 512-byte blocks, long and non-ASCII names, none at all."""
    rng = random.Random(seed)
    names = [
        "k.json",
        "k.0.jpg",
        "é" * 40 + ".png",
        "d/" * 60 + "k.webp",
        "n" * 94,
        "d/" + "n" * 93,
        "\udcff.jpg",
    ]  # 100, 101 bytes
    members = [
        (
            f"{index:06d}{rng.choice(names)}",
            rng.randbytes(rng.choice([0, 1, 511, 512, 513, rng.randrange(40_000)])),
        )
        for index in range(rng.randrange(1, 30 if seed < 4 else 600) if seed else 0)  # 600: several writes
    ]
    digest = hashlib.sha256()
    locations = write_tar(tmp_path / "ours.tar", members, digest)
    assert digest.hexdigest() == sha256_file(tmp_path / "ours.tar")
    with tarfile.open(tmp_path / "theirs.tar", mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uname, info.gname = len(data), 0o644, "", ""
            archive.addfile(info, io.BytesIO(data))
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "theirs.tar").read_bytes()
    assert locations == tar_locations(tmp_path / "theirs.tar")


def test_written_samples_read_back_with_their_sidecar(tmp_path):
    shard = tmp_path / "s-000000.tar"
    samples = [("a", sample(["0.jpg", "1.png"]), [b"x", b"y"]), ("b", sample([]), [])]
    assert write_samples(shard, samples) == shard_index_path(shard)
    assert [name for name, _ in iter_tar(shard)] == ["a.json", "a.0.jpg", "a.1.png", "b.json"]
    assert member_locations(shard) == tar_locations(shard)
    assert list(iter_samples(shard)) == [
        ("a", samples[0][1], {"0.jpg": b"x", "1.png": b"y"}),
        ("b", samples[1][1], {}),
    ]
    write_samples(tmp_path / "t-000000.tar", samples)
    assert (tmp_path / "t-000000.tar").read_bytes() == shard.read_bytes()


@pytest.mark.parametrize(("key", "images"), [("a.b", []), ("", []), ("a", [b"x", b"y"])])
def test_the_writer_refuses_a_key_or_images_it_could_not_read_back(tmp_path, key, images):
    with pytest.raises(ValueError, match=r"holds a dot|images for suffixes"):
        write_samples(tmp_path / "s.tar", [(key, sample(["jpg"]), images)])


def test_members_are_grouped_by_key_in_stored_order():
    members = [("a.json", 1), ("a.0.jpg", 2), ("b.json", 3), ("a.json", 4), (".json", 5)]
    assert list(group_samples(members)) == [
        ("a", {"json": 1, "0.jpg": 2}),
        ("b", {"json": 3}),
        ("a", {"json": 4}),
        ("", {"json": 5}),
    ]


@pytest.mark.parametrize(
    ("images", "extra"),
    [(["jpg"], [("a.jpg", b"x"), ("a.png", b"extra")]), (["jpg", "jpg"], [("a.jpg", b"x")])],
)
def test_a_sample_whose_members_are_not_its_images_is_refused(tmp_path, images, extra):
    sample_json = ShardSample(
        "s", "i", images, [[1, 1]] * len(images), [Turn("human", "<image>" * len(images)), Turn("gpt", "a")]
    )
    write_tar(tmp_path / "s.tar", [("a.json", sample_json.to_bytes()), *extra])
    with pytest.raises(ValueError, match=r"sample a: members \[.*\] are not its images"):
        list(iter_samples(tmp_path / "s.tar"))


def test_a_sample_without_json_or_outside_the_contract_is_refused(tmp_path):
    write_tar(tmp_path / "s.tar", [("a.jpg", b"x")])
    with pytest.raises(ValueError, match="sample a: no json member"):
        list(iter_samples(tmp_path / "s.tar"))
    write_tar(tmp_path / "s.tar", [("a.json", b'{"images":["jpg"]}'), ("a.jpg", b"x")])
    with pytest.raises(SampleError, match="`source` is not a text"):
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


def test_a_sidecar_differs_only_when_present_and_not_the_recorded_one(tmp_path):
    shard = tmp_path / "s-000000.tar"
    index = write_samples(shard, [("a", sample([]), [])])
    recorded = sha256_file(index)
    assert not index_differs(shard, recorded) and not index_differs(shard, None)
    assert index_differs(shard, "0" * 64)
    index.unlink()
    assert not index_differs(shard, "0" * 64)


class _CountedOpens:
    """A shard's path that counts how often it is opened (the file itself is real)."""

    def __init__(self, path: Path) -> None:
        self.path, self.opens = path, 0

    def open(self, mode: str, buffering: int = -1):
        self.opens += 1
        return self.path.open(mode, buffering=buffering)


def test_a_member_reader_opens_each_file_once_and_reads_every_member_as_the_tar_holds_it(tmp_path):
    shard = tmp_path / "a.tar"
    members = [(f"{key:03d}.{suffix}", bytes([key]) * (key * 100 + 1)) for key in range(5) for suffix in "ab"]
    locations = write_tar(shard, members)
    counted = _CountedOpens(shard)
    with MemberReader() as reader:
        assert [reader.read(counted, location) for location in reversed(locations)] == [
            data for _, data in reversed(members)
        ]
    assert counted.opens == 1
    beyond = MemberLocation("004.b", locations[-1].offset, shard.stat().st_size)
    with pytest.raises(OSError, match=r"004\.b is truncated"):
        read_at(shard, beyond)


def test_a_short_write_goes_on_where_it_stopped():
    buffers = [b"abc", b"", b"defg", b"h"]
    for count in range(9):
        assert b"".join(_after(buffers, count)) == b"abcdefgh"[count:], count


def test_every_byte_written_is_handed_to_the_disk_once_in_order(tmp_path):
    handed: list[tuple[int, int]] = []
    member = bytes(range(256)) * 12_289  # ~3 MiB: a hand-off falls inside a member's batch
    with open(tmp_path / "a.tar", "wb", buffering=0) as handle:
        writer = _Writer(handle.fileno(), None, lambda fd, offset, count: handed.append((offset, count)))
        for _ in range(10):
            writer.write(member)
        writer.flush()
    assert (tmp_path / "a.tar").read_bytes() == member * 10
    assert len(handed) == 10 * len(member) // WRITEBACK_BYTES
    assert handed[0][0] == 0
    for (offset, count), (following, _) in itertools.pairwise(handed):
        assert offset + count == following  # contiguous, none twice
    assert all(count >= WRITEBACK_BYTES for _, count in handed)
    assert handed[-1][0] + handed[-1][1] <= 10 * len(member)


def test_the_disk_hint_is_harmless_on_any_descriptor(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 4096)
    with open(path, "rb+", buffering=0) as handle:
        start_writeback(handle.fileno(), 0, 4096)  # a regular file: the disk starts on it
    start_writeback(-1, 0, 1)  # a bad descriptor: ignored, as a hint may be
    assert path.read_bytes() == b"x" * 4096
