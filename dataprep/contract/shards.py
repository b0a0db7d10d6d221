"""Deterministic tar writing and reading helpers for the shard contract.

Same members in ⇒ same bytes out: members are written in the order given (callers sort by
sample), with fixed mtime/uid/gid/mode and no user names, in plain POSIX (ustar) format.
Files appear under their final name only once complete (write to a temp name, fsync, rename).
Each shard has a sidecar index (`<name>.idx.json`: member names, offsets and sizes) for random access.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataprep.files import PARTIAL_SUFFIX, canonical_json, write_atomic

TAR_FORMAT = tarfile.USTAR_FORMAT


@dataclass(frozen=True)
class MemberLocation:
    """Where a member's bytes lie inside a tar file."""

    name: str
    offset: int
    size: int


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> list[MemberLocation]:
    """Atomically write `members` to the tar at `path`; return where each member's data lies.
    `members` may be made as they are written: if making one fails, the partial file goes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    locations = []
    try:
        with open(partial, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w", format=TAR_FORMAT) as archive:
                for name, data in members:
                    info = _tarinfo(name, len(data))
                    header = len(info.tobuf(archive.format, archive.encoding, archive.errors))
                    locations.append(MemberLocation(name, archive.offset + header, len(data)))
                    archive.addfile(info, io.BytesIO(data))
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return locations


def read_at(path: Path, location: MemberLocation) -> bytes:
    """Read one member's bytes by its recorded location."""
    with open(path, "rb") as handle:
        handle.seek(location.offset)
        data = handle.read(location.size)
    if len(data) != location.size:
        raise OSError(f"{path}: member {location.name} is truncated")
    return data


def iter_tar(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield (member name, bytes) of a tar file in stored order."""
    with tarfile.open(path, mode="r:") as archive:
        for info in archive:
            if info.isfile():
                handle = archive.extractfile(info)
                assert handle is not None
                yield info.name, handle.read()


def tar_locations(path: Path) -> list[MemberLocation]:
    """Where every file member's data lies, read from the tar headers alone."""
    with tarfile.open(path, mode="r:") as archive:
        return [MemberLocation(info.name, info.offset_data, info.size) for info in archive if info.isfile()]


def shard_index_path(shard: Path) -> Path:
    """The sidecar index of `<name>.tar`: `<name>.idx.json`."""
    return shard.with_name(shard.name.removesuffix(".tar") + ".idx.json")


def write_shard_index(shard: Path, locations: list[MemberLocation]) -> Path:
    """Write the sidecar index of a finished shard: its size and every member's (name, offset, size),
    so readers can seek to a sample without scanning the tar headers."""
    index = {
        "tar_bytes": shard.stat().st_size,
        "members": [[location.name, location.offset, location.size] for location in locations],
    }
    path = shard_index_path(shard)
    write_atomic(path, canonical_json(index))
    return path


def member_locations(shard: Path) -> list[MemberLocation]:
    """Every member's location: from the sidecar index when it describes this file (same size),
    else from the tar headers."""
    index_file = shard_index_path(shard)
    if index_file.exists():
        index = json.loads(index_file.read_bytes())
        if index.get("tar_bytes") == shard.stat().st_size:
            return [MemberLocation(name, offset, size) for name, offset, size in index["members"]]
    return tar_locations(shard)


def split_member_name(name: str) -> tuple[str, str]:
    """`<key>.<suffix>` → (key, suffix), splitting at the first dot as webdataset does."""
    key, _, suffix = name.partition(".")
    return key, suffix


def iter_samples(path: Path) -> Iterator[tuple[str, dict[str, Any], dict[str, bytes]]]:
    """Yield (key, sample json, {image suffix: bytes}) for each sample of a shard."""
    current_key: str | None = None
    members: dict[str, bytes] = {}
    for name, data in iter_tar(path):
        key, suffix = split_member_name(name)
        if current_key is not None and key != current_key:
            yield _sample(current_key, members)
            members = {}
        current_key = key
        members[suffix] = data
    if current_key is not None:
        yield _sample(current_key, members)


def _sample(key: str, members: dict[str, bytes]) -> tuple[str, dict[str, Any], dict[str, bytes]]:
    record = json.loads(members.pop("json"))
    check_members(key, list(members), record["images"])
    return key, record, {suffix: members[suffix] for suffix in record["images"]}


def check_members(key: str, suffixes: list[str], images: list[str]) -> None:
    """Raise ValueError unless a sample's members besides its json are exactly its images, one each."""
    if sorted(suffixes) != sorted(images):
        raise ValueError(f"sample {key}: members {sorted(suffixes)} are not its images {images}")
