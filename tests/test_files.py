"""General file helpers: canonical JSON, atomic writes and file stamps."""

from __future__ import annotations

import os

import pytest

from dataprep.files import FileStamp, canonical_json, sha256_file, write_atomic


def test_canonical_json_refuses_what_is_not_json():
    assert (
        canonical_json({"b": [1.5, "é"], "a": 10**30})
        == '{"a":1000000000000000000000000000000,"b":[1.5,"é"]}'.encode()
    )
    for value in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(ValueError):
            canonical_json({"width": value})
    with pytest.raises(UnicodeEncodeError):
        canonical_json({"text": "a\ud800"})


def test_write_atomic_leaves_no_partial_file_and_sha256_reads_it_back(tmp_path):
    path = tmp_path / "sub" / "f.json"
    write_atomic(path, b"abc")
    assert path.read_bytes() == b"abc" and not list(tmp_path.rglob("*.partial"))
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_file_stamp_tells_a_changed_or_missing_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    stamp = FileStamp.read(path)
    assert stamp == FileStamp.of(path.stat()) == FileStamp(3, path.stat().st_mtime_ns)
    assert stamp.to_json() == [3, stamp.mtime_ns] and FileStamp.from_json(stamp.to_json()) == stamp
    assert stamp.matches(path) and stamp.matches(str(path))
    os.utime(path, ns=(0, stamp.mtime_ns + 1))
    assert not stamp.matches(path)
    os.utime(path, ns=(0, stamp.mtime_ns))
    path.write_bytes(b"abcd")
    os.utime(path, ns=(0, stamp.mtime_ns))
    assert not stamp.matches(path)
    path.unlink()
    assert not stamp.matches(path)
    with pytest.raises(OSError):
        FileStamp.read(path)
