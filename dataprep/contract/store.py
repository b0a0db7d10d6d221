"""Where a build's files lie: a local path, or an object of a store named by a URL (`s3://bucket/key`,
`gs://bucket/key`), read through `pyarrow.fs`, imported only when an object is first opened (so a
reader of local builds needs no pyarrow). `file://` URLs are local paths. S3's endpoint, region and
credentials come from the AWS SDK's usual variables and profiles (`AWS_ENDPOINT_URL`, `AWS_PROFILE`, …).

An `ObjectPath` offers what the readers of a build use of a `Path`: joining, `parent`, `name`,
`exists`, `stat`, `open("rb")`, `read_bytes`, `iterdir`."""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

STORE_SCHEMES = {"s3": "s3", "gs": "gs", "gcs": "gs"}  # as written → as pyarrow names the store
SEQUENTIAL_BUFFER = 8 << 20  # bytes fetched per request when an object is read front to back
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class LocationError(ValueError):
    """A location that names no local path nor a supported store (a misspelt or unsupported scheme)."""


class ObjectStat(NamedTuple):
    """An object's size and last modification, under the names of `os.stat_result`."""

    st_size: int
    st_mtime_ns: int


@dataclass(frozen=True, order=True)
class ObjectPath:
    """An object (or a prefix: a folder) of a store, by its URL `<scheme>://<bucket>/<key>`."""

    url: str

    @property
    def _path(self) -> str:
        """`bucket/key`, as pyarrow names it."""
        return self.url.split("://", 1)[1]

    def __str__(self) -> str:
        return self.url

    def __truediv__(self, relative: str) -> ObjectPath:
        return ObjectPath(f"{self.url}/{relative.strip('/')}")

    @property
    def bucket(self) -> ObjectPath:
        """The root of this object's bucket, `<scheme>://<bucket>`."""
        return ObjectPath(self.url.split("/", 3)[0] + "//" + self._path.split("/", 1)[0])

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1] if "/" in self._path else ""

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.url.rsplit("/", 1)[0]) if "/" in self._path else self

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        if not self.url.startswith(other.url + "/"):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.url[len(other.url) + 1 :])

    def filesystem(self) -> tuple[Any, str]:
        """The `pyarrow.fs.FileSystem` of this object's store (one per bucket and process) and the
        object's path in it."""
        scheme, bucket = self.url.split("://", 1)[0], self.bucket._path
        return _filesystem(STORE_SCHEMES[scheme], bucket), self._path

    def _info(self) -> Any:
        filesystem, path = self.filesystem()
        return filesystem.get_file_info(path)

    def exists(self) -> bool:
        return self._info().type.name != "NotFound"

    def is_dir(self) -> bool:
        return self._info().type.name == "Directory"

    def stat(self) -> ObjectStat:
        """Size and mtime of the object; FileNotFoundError when there is none (a prefix is none)."""
        info = self._info()
        if info.type.name != "File":
            raise FileNotFoundError(f"{self}: no such object")
        return ObjectStat(info.size, info.mtime_ns or 0)

    def open(self, mode: str = "rb", buffering: int = -1) -> io.BufferedIOBase | io.RawIOBase:
        """Read the object, seekable. Unbuffered (`buffering=0`) each read is one ranged request for
        exactly the bytes asked; buffered (the default) reads ahead `SEQUENTIAL_BUFFER` bytes."""
        if mode != "rb":
            raise ValueError(f"{self}: objects are opened for reading only ('rb'), not {mode!r}")
        filesystem, path = self.filesystem()
        raw = _RawObject(filesystem.open_input_file(path))
        return raw if buffering == 0 else io.BufferedReader(raw, SEQUENTIAL_BUFFER)

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    def iterdir(self) -> Iterator[ObjectPath]:
        """The objects and prefixes right under this prefix."""
        import pyarrow.fs

        filesystem, path = self.filesystem()
        for info in filesystem.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True)):
            yield self / info.base_name


Location = Path | ObjectPath


def location(text: str | Location) -> Location:
    """A local path, or an `ObjectPath` for a store URL; a `file://` URL is its local path (a
    Location is itself). Raises LocationError for any other scheme, and for a URL with one slash
    (`s3:/bucket`), which would otherwise name a local folder `s3:`."""
    if not isinstance(text, str):
        return text
    match = _SCHEME.match(text)
    if match is None:
        return Path(text)
    scheme = match.group(1).lower()
    if not text[match.end() :].startswith("//"):
        raise LocationError(f"{text!r}: a URL needs two slashes after '{scheme}:' (a local path has none)")
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise LocationError(
            f"{text!r}: options in the URL are not read (the store's are set by its variables)"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise LocationError(f"{text!r}: a file:// URL names a local path (file:///path)")
        return Path(unquote(parts.path))
    if scheme not in STORE_SCHEMES:
        supported = ", ".join(f"{name}://" for name in (*STORE_SCHEMES, "file"))
        raise LocationError(f"{text!r}: unsupported scheme {scheme}:// (supported: {supported})")
    key = parts.path.strip("/")
    if not parts.netloc or any(part in ("", ".", "..") for part in key.split("/") if key):
        raise LocationError(f"{text!r}: expected {scheme}://<bucket>/<key> without empty, . or .. parts")
    return ObjectPath(f"{scheme}://{parts.netloc}" + (f"/{key}" if key else ""))


@functools.cache
def _filesystem(scheme: str, bucket: str) -> Any:
    try:
        import pyarrow.fs
    except ImportError:
        raise LocationError(f"reading {scheme}://{bucket} needs pyarrow (pip install pyarrow)") from None
    return pyarrow.fs.FileSystem.from_uri(f"{scheme}://{bucket}")[0]


class _RawObject(io.RawIOBase):
    """A pyarrow random-access file as a raw Python file: each `readinto` one ranged read."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._native.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._native.seek(offset, whence)

    def tell(self) -> int:
        return self._native.tell()

    def close(self) -> None:
        if not self.closed:
            self._native.close()
        super().close()
