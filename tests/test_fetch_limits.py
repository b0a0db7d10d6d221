"""Limits before anything is written: archive member counts, declared sizes and compression ratios
(zip bombs), bytes that differ from what a member declares, and the free disk space."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import zipfile
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataprep import fetch as fetch_module
from dataprep.fetch import FetchError, UnsafeArchive, fetch, unpack
from dataprep.recipe.model import Download

from helpers.loopback_http import Fault, Site, serve
from helpers.served_upstreams import tar_gz_bytes

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
Usage = namedtuple("Usage", "total used free")


def tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    path.write_bytes(tar_gz_bytes(members))
    return path


def zip_file(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB file system (tmpfs), where mounting one is allowed (root); else skipped."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("no tmpfs can be mounted here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_real_small_disk_refuses_a_larger_download(small_disk: Path) -> None:
    with serve(Site(files={"/a.bin": DATA, "/small.bin": DATA[:100_000]})) as site:
        with pytest.raises(FetchError, match=r"needs 300,000 bytes but .* has only [\d,]+ bytes free"):
            fetch(small_disk, Download(url=f"{site.url}/a.bin"))
        assert fetch(small_disk, Download(url=f"{site.url}/small.bin")).bytes == 100_000
    assert not (small_disk / "a.bin.partial").exists() and len(site.requests) == 2


def free_space(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    """Fakes the free space (where no small tmpfs can be mounted, a full disk cannot be made)."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * free, 9 * free, free))


def test_a_zip_bomb_is_refused_naming_the_archive_and_the_member(tmp_path: Path) -> None:
    bomb = zip_file(tmp_path / "bomb.zip", {"ok.txt": b"fine", "data/zeros.bin": bytes(64 << 20)})
    assert bomb.stat().st_size < (64 << 20) // fetch_module.MAX_RATIO  # deflate packs zeros ~1000:1
    with pytest.raises(UnsafeArchive, match=r"bomb\.zip: member 'data/zeros\.bin' unpacks .* a zip bomb"):
        unpack(bomb, tmp_path / "root")
    assert not list((tmp_path / "root").iterdir())


def test_a_tar_gz_bomb_is_refused_as_a_whole(tmp_path: Path) -> None:
    bomb = tar_gz(tmp_path / "bomb.tar.gz", {f"z{index}.bin": bytes(8 << 20) for index in range(4)})
    with pytest.raises(UnsafeArchive, match=r"bomb\.tar\.gz: the archive unpacks .* a zip bomb"):
        unpack(bomb, tmp_path / "root")
    assert not list((tmp_path / "root").iterdir())


def test_small_or_ordinarily_compressed_members_pass(tmp_path: Path) -> None:
    text = b"".join(b'{"id": %d, "question": "What is shown?"}\n' % index for index in range(400_000))
    archive = zip_file(tmp_path / "ok.zip", {"tiny.bin": bytes(1 << 20), "train.jsonl": text})
    assert unpack(archive, tmp_path / "root") == ["tiny.bin", "train.jsonl"]
    assert (tmp_path / "root/train.jsonl").read_bytes() == text


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_too_many_members_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setattr(fetch_module, "MAX_MEMBERS", 5)
    members = {f"images/{index}.jpg": b"x" for index in range(6)}
    archive = (zip_file if kind == "zip" else tar_gz)(tmp_path / f"many.{kind}", members)
    with pytest.raises(UnsafeArchive, match=r"many\.\w+: over 5 members"):
        unpack(archive, tmp_path / "root")
    assert not list((tmp_path / "root").iterdir())
    monkeypatch.setattr(fetch_module, "MAX_MEMBERS", 6)
    assert len(unpack(archive, tmp_path / "root")) == 6


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_an_archive_declaring_too_many_bytes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setattr(fetch_module, "MAX_UNPACKED", 100_000)
    archive = (zip_file if kind == "zip" else tar_gz)(
        tmp_path / f"big.{kind}", {"a": DATA[:60_000], "b": DATA[:60_000]}
    )
    with pytest.raises(UnsafeArchive, match=r"big\.\w+: declares 120,000 unpacked bytes, over 100,000"):
        unpack(archive, tmp_path / "root")
    assert not list((tmp_path / "root").iterdir())


@pytest.mark.parametrize("declared", [50, 150])
def test_a_zip_member_whose_bytes_differ_from_its_declared_size_is_refused(
    tmp_path: Path, declared: int
) -> None:
    """The central directory and local header say `declared`; the member holds 100 stored bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as bundle:
        bundle.writestr("a.txt", b"x" * 100)
    data = bytearray(buffer.getvalue())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 22 : local + 26] = declared.to_bytes(4, "little")
    data[central + 24 : central + 28] = declared.to_bytes(4, "little")
    (tmp_path / "lying.zip").write_bytes(bytes(data))
    with pytest.raises(FetchError, match=r"lying\.zip: member 'a\.txt'"):
        unpack(tmp_path / "lying.zip", tmp_path / "root")
    assert not (tmp_path / "root/a.txt").exists()


def test_a_download_larger_than_the_free_space_is_refused_before_a_byte_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free_space(monkeypatch, 200_000)
    with serve(Site(files={"/a.bin": DATA})) as site:
        with pytest.raises(FetchError, match=r"needs 300,000 bytes but .* has only 200,000 bytes free"):
            fetch(tmp_path, Download(url=f"{site.url}/a.bin"), backoff=0.01)
        assert len(site.requests) == 1  # not retried: waiting makes no room
        with pytest.raises(FetchError, match=r"needs 300,000 bytes but .* has only 200,000 bytes free"):
            fetch(tmp_path, Download(url=f"{site.url}/b.bin"), size=len(DATA))  # known beforehand
        assert len(site.requests) == 1
    assert not list(tmp_path.rglob("*.partial*")) and not (tmp_path / "a.bin").exists()


def test_a_resumed_download_needs_room_only_for_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = Site(files={"/a.bin": DATA}, faults={"/a.bin": [Fault(after=200_000, kind="short")]})
    with serve(site):
        with pytest.raises(FetchError, match="gave up"):
            fetch(tmp_path, Download(url=f"{site.url}/a.bin"), retries=0)
        have = (tmp_path / "a.bin.partial").stat().st_size
        free_space(monkeypatch, len(DATA) - have)
        done = fetch(tmp_path, Download(url=f"{site.url}/a.bin", sha256=SHA))
    assert done.sha256 == SHA and site.requests[-1][1] == f"bytes={have}-"


def test_an_archive_is_not_unpacked_without_room_for_what_it_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = zip_file(tmp_path / "images.zip", {"images/a.bin": DATA, "images/b.bin": DATA[:1000]})
    free_space(monkeypatch, 300_999)
    with pytest.raises(
        FetchError, match=r"unpacking images\.zip: needs 301,000 bytes but .* 300,999 bytes free"
    ):
        unpack(archive, tmp_path / "root")
    assert not list((tmp_path / "root").iterdir())
    monkeypatch.undo()
    unpack(archive, tmp_path / "root")
    (tmp_path / "root/images/b.bin").unlink()
    free_space(monkeypatch, 1000)  # restoring one missing file needs room for that file only
    assert unpack(archive, tmp_path / "root") == ["images/a.bin", "images/b.bin"]
