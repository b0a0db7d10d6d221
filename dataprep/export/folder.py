"""An export's output folder: written only where no one else's files are, reused by later exports.

`export.json` records what the folder holds (the top-level names an export owns, the trainer, the
manifest, counts). It is written before anything else (`complete: false`), so an export cut off
half-way is still known as ours, and again at the end. A folder that is a file, or that holds a
top-level name no export of ours recorded, is refused before anything is written; the files of an
earlier export that this one does not write again are removed at the end."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RECORD = "export.json"
RECORD_FORMAT = "dataprep-export"


class ExportError(Exception):
    """An export that cannot be made; the message is one line naming the problem."""


def safe_name(name: str, what: str) -> str:
    """`name` when it can name one file inside a folder (not empty, no separator, no leading dot)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise ExportError(f"{what} {name!r} cannot name a file or folder")
    return name


class ExportFolder:
    """The folder `out`, checked and claimed; `path()` hands out the files the export writes."""

    def __init__(self, out: Path, owns: Iterable[str]) -> None:
        self.out = out
        self._owns = {RECORD, *owns}
        self._written: set[str] = set()
        if out.exists() and not out.is_dir():
            raise ExportError(f"--out {out} is a file, not a folder")
        earlier = _earlier_names(out)
        present = sorted(entry.name for entry in out.iterdir()) if out.exists() else []
        foreign = [name for name in present if name not in earlier]
        if foreign:
            more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            raise ExportError(
                f"--out {out} holds {foreign[0]!r}{more}, which no dataprep export wrote: "
                "give an empty or new folder"
            )
        self._earlier = earlier
        self._record({"complete": False})

    def path(self, relative: str) -> Path:
        """Where the export writes `relative` (slash-separated, inside a name it owns): its folder is
        made, and the file is kept when stale ones are removed."""
        top = relative.split("/", 1)[0]
        if top not in self._owns:
            raise AssertionError(f"{relative} is outside the names this export owns")
        self._written.add(relative)
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, relative: str, data: bytes) -> None:
        self.path(relative).write_bytes(data)

    def write_json(self, relative: str, value: Any) -> None:
        self.path(relative).write_text(
            json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    def finish(self, summary: dict[str, Any]) -> None:
        """Remove what earlier exports wrote and this one did not, then record the summary."""
        for name in sorted(self._earlier - {RECORD}):
            _remove_unwritten(self.out / name, name, self._written)
        self._owns = {name for name in self._owns if (self.out / name).exists() or name == RECORD}
        self._record({"complete": True, **summary})

    def _record(self, fields: dict[str, Any]) -> None:
        """`export.json`: the names owned (with those of an earlier export not yet removed)."""
        owns = sorted(self._owns | self._earlier) if not fields["complete"] else sorted(self._owns)
        record = {"format": RECORD_FORMAT, "owns": owns, **fields}
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / RECORD).write_text(
            json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def _earlier_names(out: Path) -> set[str]:
    """The top-level names an earlier export recorded in `out` (none when it has no record of ours)."""
    try:
        record = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return set()
    owns = record.get("owns")
    if not isinstance(owns, list):
        return set()
    return {
        name for name in owns if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")
    }


def _remove_unwritten(path: Path, relative: str, written: set[str]) -> None:
    """Remove the files under `path` (named `relative`) that are not in `written`, and folders left empty."""
    if path.is_symlink() or path.is_file():
        if relative not in written:
            path.unlink()
        return
    if not path.is_dir():
        return
    if not any(name == relative or name.startswith(relative + "/") for name in written):
        shutil.rmtree(path)
        return
    for root, folders, files in os.walk(path, topdown=False):
        base = Path(root)
        for name in files:
            file = base / name
            if file.relative_to(path.parent).as_posix() not in written:
                file.unlink()
        for name in folders:
            folder = base / name
            if folder.is_symlink():
                folder.unlink()
            elif not any(folder.iterdir()):
                folder.rmdir()
