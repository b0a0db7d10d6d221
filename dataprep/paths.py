"""Resolve names found in records to files that stay inside a declared root."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafePath(ValueError):
    """A record named a path that leaves its root (absolute, `..`, or a link pointing out)."""


def resolve_inside(root: Path, relpath: str) -> Path:
    """Return the real path of `relpath` under `root`, refusing anything that escapes it."""
    if not relpath or "\x00" in relpath:
        raise UnsafePath(f"empty or invalid path {relpath!r}")
    if os.path.isabs(relpath) or relpath.startswith(("/", "\\")):
        raise UnsafePath(f"absolute path {relpath!r}")
    real_root = os.path.realpath(root)
    try:
        candidate = os.path.realpath(os.path.join(real_root, relpath))
    except UnicodeEncodeError:  # a lone surrogate: no file can have such a name
        raise UnsafePath(f"invalid path {relpath!r}: not encodable as a file name") from None
    if os.path.commonpath([real_root, candidate]) != real_root:
        raise UnsafePath(f"{relpath!r} leaves its root folder")
    return Path(candidate)


def not_a_file(mode: int) -> str | None:
    """Why a file of this `st_mode` cannot be read as a regular file ("is a named pipe, not a
    file"), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    return f"is {kind}, not a file"
