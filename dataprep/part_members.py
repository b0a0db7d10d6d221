"""A part's members as shards and decontamination read them. A kept image that came from a file as it is
(not re-encoded) is not copied into the part: its member there is a reference to the file (its real
root, its path below it, its size and mtime when checked), and reading the member reads the file,
after checking it is still the one that was checked, below a root the build's sources declare (a
part is the build's own file, yet an altered work folder must not make it read others). Every other
member is the bytes in the part."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from dataprep.contract.shards import MemberLocation, MemberReader
from dataprep.files import FileStamp, canonical_json
from dataprep.paths import not_a_file, open_without_links

REFERENCE_PREFIX = b"dataprep-image-file\0"
"""How a reference member starts: no member of a part starts so (a sample's JSON starts with `{`, an
image kept as it is with its format's signature)."""


class ImageFileChanged(OSError):
    """A referenced image file is gone, or is not the file that was checked (its size or mtime differ,
    or a link now stands in its path): the part that refers to it is normalized again next run."""

    @classmethod
    def of(cls, name: str, change: str) -> ImageFileChanged:
        return cls(f"{name}: {change}; the next build checks it again")


class UndeclaredRoot(OSError):
    """A reference names a root that no source of the build declares (a work folder altered, or
    copied from elsewhere): nothing is read."""


def real_roots(roots: Iterable[Path]) -> tuple[str, ...]:
    """The real paths of the sources' declared roots, as references name them (sorted, each once)."""
    return tuple(sorted({os.path.realpath(root) for root in roots}))


def image_reference(real_root: str, path: str, stamp: FileStamp) -> bytes:
    """The member that stands for the file at `path` (a real path inside `real_root`), as `stamp` found it."""
    relpath = os.path.relpath(path, real_root)
    return REFERENCE_PREFIX + canonical_json({"root": real_root, "path": relpath, "stamp": stamp.to_json()})


class PartReader:
    """Reads part members by their recorded locations (each part opened once, as `MemberReader`),
    following image references to their files below `roots` (`real_roots` of the sources')."""

    def __init__(self, roots: Iterable[str]) -> None:
        self._members = MemberReader()
        self._roots = frozenset(roots)

    def read(self, part: Path, location: MemberLocation) -> bytes:
        data = self._members.read(part, location)
        if not data.startswith(REFERENCE_PREFIX):
            return data
        fields = json.loads(data[len(REFERENCE_PREFIX) :])
        if fields["root"] not in self._roots:
            raise UndeclaredRoot(
                f"{part}: refers to a file below {fields['root']}, no root of this build's sources "
                "(delete the work folder's parts/ to normalize anew)"
            )
        return _referenced(fields["root"], fields["path"], FileStamp.from_json(fields["stamp"]))

    def close(self) -> None:
        self._members.close()

    def __enter__(self) -> PartReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _referenced(root: str, relpath: str, stamp: FileStamp) -> bytes:
    """The bytes of the file at `relpath` below the real `root`, opened without following a link (as it
    was read when checked), and only while it has the `stamp` it had then."""
    name = os.path.join(root, relpath)
    descriptor = open_without_links(root, relpath, os.O_RDONLY | os.O_NONBLOCK)
    if descriptor is None:
        raise ImageFileChanged.of(name, "the image file checked is gone, or a link stands in its path")
    try:
        info = os.fstat(descriptor)
        if not_a_file(info.st_mode) or FileStamp.of(info) != stamp:
            raise ImageFileChanged.of(name, "the image file changed after it was checked")
        data = os.read(descriptor, stamp.size + 1)  # one more byte: a file grown since shows
        while len(data) <= stamp.size and (more := os.read(descriptor, stamp.size + 1 - len(data))):
            data += more  # a short read (rare for a file): go on where it stopped
    finally:
        os.close(descriptor)
    if len(data) != stamp.size:
        raise ImageFileChanged.of(name, "the image file changed while it was read")
    return data
