"""Names from records resolve only to files inside their root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataprep.paths import UnsafePath, open_without_links, resolve_inside


def test_a_name_with_a_lone_surrogate_is_an_invalid_path(tmp_path: Path) -> None:
    with pytest.raises(UnsafePath, match="not encodable"):
        resolve_inside(tmp_path, "images/\ud800.jpg")
    # an undecodable byte of a real file name (surrogateescape) is a name like any other
    assert resolve_inside(tmp_path, "\udc80.jpg") == Path(f"{tmp_path}/\udc80.jpg")


def test_only_plain_names_without_links_are_opened_directly(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c.jpg").write_bytes(b"abc")
    (tmp_path / "top.jpg").write_bytes(b"top")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "top.jpg")  # inside the root: `resolve_inside` allows it
    (tmp_path / "folder_link").symlink_to(tmp_path / "a")
    real = os.path.realpath(tmp_path)
    for relpath, data in [("top.jpg", b"top"), ("a/b/c.jpg", b"abc")]:
        descriptor = open_without_links(real, relpath, os.O_RDONLY)
        assert descriptor is not None, relpath
        with open(descriptor, "rb") as handle:
            assert handle.read() == data
    for relpath in [
        "link.jpg",
        "folder_link/b/c.jpg",
        "a/./b/c.jpg",
        "a/../top.jpg",
        "a//b/c.jpg",
        "/etc/passwd",
        "\\top.jpg",
        "absent.jpg",
        "a/b/\ud800.jpg",
        "a/b/c.jpg\x00",
    ]:
        assert open_without_links(real, relpath, os.O_RDONLY) is None, relpath
    open_files = len(os.listdir("/proc/self/fd"))
    assert open_without_links(real, "a/absent/c.jpg", os.O_RDONLY) is None
    assert len(os.listdir("/proc/self/fd")) == open_files  # the folders opened on the way are closed
