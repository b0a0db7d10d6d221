"""The shard format: deterministic tars of samples with a sidecar index, their writer and readers.

Same members in ⇒ same bytes out: members are written in the order given (callers sort by
sample), with fixed mtime/uid/gid/mode and no user names, in plain POSIX (ustar) format.
Files appear under their final name only once complete (write to a temp name, fsync, rename).
Each shard has a sidecar index (`<name>.idx.json`: member names, offsets and sizes) for random access.
Shards are written locally; the readers take a `Location` (a local path or an object of a store).
A sample is `<key>.json` and one `<key>.<suffix>` member per image (`write_samples` writes them).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from dataprep.contract.sample import ShardSample, parse_sample
from dataprep.contract.store import Location
from dataprep.files import PARTIAL_SUFFIX, canonical_json, sha256_file, write_atomic

T = TypeVar("T")

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


def _tar_header(name: str, size: int) -> bytes:
    """The header `tarfile` writes for a member, made once per member. A name of at most 100 bytes
    and a size that fits the ustar field (the shards' members) are filled into the header of an
    empty name and size that `tarfile` made (`_HEADER`), checksum recomputed; any other goes through
    `tarfile` (which splits a long name, or refuses a size ustar cannot hold)."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > tarfile.LENGTH_NAME or size >= _LARGEST_SIZE:
        return _tarinfo(name, size).tobuf(TAR_FORMAT, "utf-8", "surrogateescape")
    head = encoded.ljust(tarfile.LENGTH_NAME, tarfile.NUL) + _HEADER[100:124] + b"%011o\0" % size
    return head + _HEADER[136:148] + b"%06o\0 " % (sum(head) + _HEADER_REST_SUM) + _HEADER[156:]


_HEADER = _tarinfo("", 0).tobuf(TAR_FORMAT, "utf-8", "surrogateescape")
"""Fields: name [0:100], mode, uid, gid [100:124], size [124:136], mtime [136:148], checksum
[148:156], the rest [156:512]."""
_HEADER_REST_SUM = sum(_HEADER[136:148]) + 8 * ord(" ") + sum(_HEADER[156:])
"""The checksum's part from mtime on, the checksum field counted as spaces (as `tarfile` does)."""
_LARGEST_SIZE = 8**11
"""Sizes below fit the header's 11 octal digits."""
_ZEROS = bytes(tarfile.BLOCKSIZE)
_BATCH_BYTES = 1 << 16
_BATCH_BUFFERS = 512
WRITEBACK_BYTES = 8 << 20
"""Every this many bytes written, the disk is asked to start writing them (Linux `sync_file_range`),
so that the `fsync` that completes a file waits for its last few MiB, not for all of it: the disk
writes while the worker goes on (a build's fsyncs otherwise cost ~8 % of its wall time, §9)."""
_SYNC_FILE_RANGE_WRITE = 2


def _writeback_call() -> Any:
    """Linux's `sync_file_range`, or None where there is none (the final `fsync` then does it all)."""
    if sys.platform != "linux":
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return call


_SYNC_FILE_RANGE = _writeback_call()


def start_writeback(descriptor: int, offset: int, count: int) -> None:
    """Ask the disk to start writing bytes `offset` to `offset + count` of a file, without waiting (a
    hint: a failure changes nothing, the final `fsync` still makes them durable)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(descriptor, offset, count, _SYNC_FILE_RANGE_WRITE)


class Digest(Protocol):
    """A running hash (`hashlib.sha256()`)."""

    def update(self, data: bytes, /) -> None: ...


class _Writer:
    """Writes buffers to a file descriptor in batches of about 64 KiB (one `os.writev` each: a member
    with its header and padding, or many small members, in one system call), and hashes them when
    given a hash. A batch holds at most 64 KiB beyond one member: members are written as made. Every
    `WRITEBACK_BYTES` written are handed to `writeback` (the disk starts on them)."""

    def __init__(
        self,
        descriptor: int,
        digest: Digest | None,
        writeback: Callable[[int, int, int], None] = start_writeback,
    ) -> None:
        self._descriptor = descriptor
        self._digest = digest
        self._writeback = writeback
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._written = 0  # bytes written so far
        self._handed = 0  # of which handed to `writeback`

    def write(self, *buffers: bytes) -> None:
        for buffer in buffers:
            if self._digest is not None:
                self._digest.update(buffer)
            self._pending.append(buffer)
            self._pending_bytes += len(buffer)
        if self._pending_bytes >= _BATCH_BYTES or len(self._pending) >= _BATCH_BUFFERS:
            self.flush()

    def flush(self) -> None:
        buffers: list[bytes] | list[memoryview] = self._pending
        remaining = self._pending_bytes
        while remaining:
            written = os.writev(self._descriptor, buffers)
            remaining -= written
            if remaining:  # a short write (rare): go on where it stopped
                buffers = _after(buffers, written)
        self._written += self._pending_bytes
        self._pending = []
        self._pending_bytes = 0
        if self._written - self._handed >= WRITEBACK_BYTES:
            self._writeback(self._descriptor, self._handed, self._written - self._handed)
            self._handed = self._written


def _after(buffers: list[bytes] | list[memoryview], count: int) -> list[memoryview]:
    """What remains of `buffers` after their first `count` bytes."""
    for index, buffer in enumerate(buffers):
        if count < len(buffer):
            return [memoryview(buffer)[count:], *map(memoryview, buffers[index + 1 :])]
        count -= len(buffer)
    return []


def write_tar(
    path: Path, members: Iterable[tuple[str, bytes]], digest: Digest | None = None
) -> list[MemberLocation]:
    """Atomically write `members` to the tar at `path`; return where each member's data lies.
    `members` may be made as they are written: if making one fails, the partial file goes. With
    `digest`, every byte written is also fed to it (a shard's sha256 without reading it back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    locations = []
    offset = 0
    try:
        with open(partial, "wb", buffering=0) as handle:
            writer = _Writer(handle.fileno(), digest)
            for name, data in members:  # the bytes `tarfile` writes
                header = _tar_header(name, len(data))
                padding = -len(data) % tarfile.BLOCKSIZE
                locations.append(MemberLocation(name, offset + len(header), len(data)))
                writer.write(header, data, _ZEROS[:padding])
                offset += len(header) + len(data) + padding
            end = offset + 2 * tarfile.BLOCKSIZE  # two zero blocks, then zeros up to a whole record
            writer.write(tarfile.NUL * (end - offset + -end % tarfile.RECORDSIZE))
            writer.flush()
            os.fsync(handle.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return locations


def read_at(path: Location, location: MemberLocation) -> bytes:
    """Read one member's bytes by its recorded location (one read: one request of an object)."""
    with MemberReader() as reader:
        return reader.read(path, location)


class MemberReader:
    """Reads members by their recorded locations, keeping each file open until the reader closes: one
    open per file, not per member (one read per member: one request of an object)."""

    def __init__(self) -> None:
        self._handles: dict[str, IO[bytes]] = {}

    def read(self, path: Location, location: MemberLocation) -> bytes:
        handle = self._handles.get(str(path))
        if handle is None:
            handle = self._handles[str(path)] = path.open("rb", buffering=0)
        handle.seek(location.offset)
        data = handle.read(location.size)
        if len(data) != location.size:
            raise OSError(f"{path}: member {location.name} is truncated")
        return data

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def __enter__(self) -> MemberReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_tar(path: Location) -> Iterator[tuple[str, bytes]]:
    """Yield (member name, bytes) of a tar file in stored order."""
    with path.open("rb") as handle, tarfile.open(fileobj=handle, mode="r:") as archive:
        for info in archive:
            if info.isfile():
                handle = archive.extractfile(info)
                assert handle is not None
                yield info.name, handle.read()


def tar_locations(path: Location) -> list[MemberLocation]:
    """Where every file member's data lies, read from the tar headers alone."""
    with path.open("rb") as handle, tarfile.open(fileobj=handle, mode="r:") as archive:
        return [MemberLocation(info.name, info.offset_data, info.size) for info in archive if info.isfile()]


def shard_index_path(shard: Location) -> Location:
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


def index_differs(shard: Location, sha256: str | None) -> bool:
    """Whether the shard's sidecar index exists and is not the one of this sha256 (a manifest's;
    None when it records none)."""
    index = shard_index_path(shard)
    return bool(sha256) and index.exists() and sha256_file(index) != sha256


def member_locations(shard: Location) -> list[MemberLocation]:
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


def group_samples(members: Iterable[tuple[str, T]]) -> Iterator[tuple[str, dict[str, T]]]:
    """Group consecutive members named `<key>.<suffix>` into samples: (key, {suffix: member}), in
    stored order; every reader of a shard groups its members by this."""
    current: str | None = None
    group: dict[str, T] = {}
    for name, member in members:
        key, suffix = split_member_name(name)
        if current is not None and key != current:
            yield current, group
            group = {}
        current = key
        group[suffix] = member
    if current is not None:
        yield current, group


def check_members(key: str, suffixes: list[str], images: list[str]) -> None:
    """Raise ValueError unless a sample's members besides its json are exactly its images, one each."""
    if sorted(suffixes) != sorted(images):
        raise ValueError(f"sample {key}: members {sorted(suffixes)} are not its images {images}")


def read_sample(key: str, data: bytes, suffixes: Iterable[str]) -> ShardSample:
    """The sample whose `<key>.json` member holds `data` and whose other members have `suffixes`;
    raises ValueError (SampleError) when it is outside the contract."""
    sample = parse_sample(json.loads(data))
    check_members(key, [suffix for suffix in suffixes if suffix != "json"], sample.images)
    return sample


def iter_samples(path: Location) -> Iterator[tuple[str, ShardSample, dict[str, bytes]]]:
    """Yield (key, sample, {image suffix: bytes}) for each sample of a shard, each checked."""
    for key, members in group_samples(iter_tar(path)):
        if "json" not in members:
            raise ValueError(f"sample {key}: no json member")
        sample = read_sample(key, members["json"], members)
        yield key, sample, {suffix: members[suffix] for suffix in sample.images}


def sample_members(key: str, sample: ShardSample, images: Sequence[bytes]) -> list[tuple[str, bytes]]:
    """A sample's tar members: `<key>.json`, then `<key>.<suffix>` per image in the json's order."""
    if "." in key or not key:
        raise ValueError(f"sample key {key!r} is empty or holds a dot")
    if len(images) != len(sample.images):
        raise ValueError(f"sample {key}: {len(images)} images for suffixes {sample.images}")
    members = [(f"{key}.json", sample.to_bytes())]
    return members + [(f"{key}.{suffix}", data) for suffix, data in zip(sample.images, images, strict=True)]


def write_samples(path: Path, samples: Iterable[tuple[str, ShardSample, Sequence[bytes]]]) -> Path:
    """Write a shard as the contract has it: the tar of (key, sample, image bytes) in the order given,
    then its sidecar index; return the index's path."""
    members = (member for key, sample, images in samples for member in sample_members(key, sample, images))
    return write_shard_index(path, write_tar(path, members))
