"""A recipe's lock file (`<recipe>.lock.json` beside it): the URL, revision, size and sha256 of every
file a fetch put in place. While it exists, every download of those URLs is pinned to it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import Field, ValidationError

from dataprep.files import write_atomic
from dataprep.recipe.model import Strict, hub_parts

COMMIT = re.compile(r"[0-9a-f]{40}")


class LockError(Exception):
    """A lock file that cannot be read."""


class LockedFile(Strict):
    url: str
    revision: str | None = Field(
        description="hf:// only: the commit the hub served the file from, else the revision the URL names"
    )
    size: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @property
    def commit(self) -> str | None:
        """The hub commit to fetch this file from again (None: the URL's own revision, or not hf://)."""
        return self.revision if self.revision and COMMIT.fullmatch(self.revision) else None


class Lock(Strict):
    files: list[LockedFile]


def lock_path(recipe_file: Path) -> Path:
    """`recipes/x.yaml` → `recipes/x.lock.json`."""
    return Path(recipe_file).with_suffix(".lock.json")


def locked_file(url: str, size: int, sha256: str, commit: str | None = None) -> LockedFile:
    """A fetched file's lock entry; for hf://, the commit the hub served it from when it said."""
    revision = (commit or hub_parts(url)[3]) if url.startswith("hf://") else None
    return LockedFile(url=url, revision=revision, size=size, sha256=sha256)


def read_lock(path: Path) -> dict[str, LockedFile]:
    """The locked files by URL; none when there is no lock file."""
    if not path.exists():
        return {}
    try:
        lock = Lock.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise LockError(
            f"{path}: not a lock file ({error.error_count()} problems: {error.errors()[0]['msg']})"
        ) from None
    return {file.url: file for file in lock.files}


def write_lock(path: Path, files: Iterable[LockedFile]) -> None:
    """Write the lock: the files given, with those of an earlier lock kept where the URL is not given."""
    merged = read_lock(path) | {file.url: file for file in files}
    lock = Lock(files=[merged[url] for url in sorted(merged)])
    text = json.dumps(lock.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_atomic(path, text.encode("utf-8"))  # readable, and diffs well under version control
