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


def open_without_links(real_root: str, relpath: str, flags: int) -> int | None:
    """A descriptor of `relpath` opened with `flags` under `real_root` (a real path), when `relpath`
    is plain names that are no links (the file's real path is then `real_root/relpath`); None for
    anything else (a link, `.`, `..`, an empty name, a name no file can have, a failed open), which
    `resolve_inside` then judges. Each folder is opened below the one before without following links
    (`O_NOFOLLOW`), so no link followed between the check and the open can lead out of the root."""
    names = relpath.split("/")
    if relpath.startswith("\\") or not all(names) or "." in names or ".." in names:
        return None
    folder: int | None = None
    try:
        if len(names) == 1:
            return os.open(os.path.join(real_root, relpath), flags | os.O_NOFOLLOW)
        folder = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        for name in names[:-1]:
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
            os.close(folder)
            folder = inner
        return os.open(names[-1], flags | os.O_NOFOLLOW, dir_fd=folder)
    except (OSError, ValueError):  # ValueError: a NUL; UnicodeEncodeError: a lone surrogate
        return None
    finally:
        if folder is not None:
            os.close(folder)
