"""An export's output folder: written only where no one else's files are, reused by later exports,
and left untouched where an export would write the same bytes again.

`export.json` records what the folder holds (the top-level names an export owns, then its summary).
Before the folder first changes (a file written with other bytes, a new name, a stale file removed),
it is written with `complete: false`, so an export cut off half-way is still known as ours; at the
end it is written with `complete: true` and the summary. A re-run that would write the same files
changes none, `export.json` included. A folder that is a file, or that holds a top-level name no
export of ours recorded, is refused before anything is written; the files of an earlier export that
this one does not write again are removed at the end."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from dataprep.files import PARTIAL_SUFFIX, holds, same_file

RECORD = "export.json"
RECORD_FORMAT = "dataprep-export"


class ExportError(Exception):
    """An export that cannot be made; the message is one line naming the problem."""


class ExportFolder:
    """The folder `out`, checked and claimed for the top-level names in `owns`."""

    def __init__(self, out: Path, owns: Iterable[str]) -> None:
        self.out = out
        self._owns = {RECORD, *owns}
        self._written: set[str] = set()
        self._partial: dict[str, IO[str] | None] = {}
        if out.exists() and not out.is_dir():
            raise ExportError(f"--out {out} is a file, not a folder")
        earlier = _earlier_names(out)
        present = sorted(entry.name for entry in out.iterdir()) if out.exists() else []
        foreign = [name for name in present if name not in earlier and name not in _partials(earlier)]
        if foreign:
            more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            raise ExportError(
                f"--out {out} holds {foreign[0]!r}{more}, which no dataprep export wrote: "
                "give an empty or new folder"
            )
        self._earlier = earlier | (_partials(earlier) & set(present))
        self._changing = False

    def write(self, relative: str, data: bytes) -> None:
        """Write the file `relative` (slash-separated, inside a name the export owns), unless it holds `data`."""
        path = self._claim(relative)
        if not holds(path, data):
            self._change()
            path.write_bytes(data)

    def write_json(self, relative: str, value: Any) -> None:
        self.write(relative, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    def partial(self, relative: str) -> Path:
        """Where to write the file `relative`: beside it (`.partial`), put in place by `close` (or
        `finish`) unless the file there holds the same bytes, removed by `abandon`."""
        self._partial[relative] = None
        return _partial(self._claim(relative))

    def open(self, relative: str) -> IO[str]:
        """A text file to write `relative` through, as `partial` has it; `close` closes it."""
        handle = open(self.partial(relative), "w", encoding="utf-8")  # noqa: SIM115
        self._partial[relative] = handle
        return handle

    def close(self, relative: str) -> None:
        """Put the file written at `partial(relative)` in place, unless the same bytes are there."""
        handle = self._partial.pop(relative)
        if handle is not None:
            handle.close()
        path = self.out / relative
        if same_file(_partial(path), path):
            _partial(path).unlink()
        else:
            self._change()
            os.replace(_partial(path), path)

    def finish(self, summary: dict[str, Any]) -> None:
        """Put the open files in place, remove what earlier exports wrote and this one did not, then
        record the summary."""
        for relative in list(self._partial):
            self.close(relative)
        earlier = sorted(self._earlier - {RECORD})
        stale = [file for name in earlier for file in _stale(self.out / name, name, self._written)]
        if stale:
            self._change()
        for file in stale:
            file.unlink()
        for name in earlier:
            _remove_empty_folders(self.out / name)
        owns = sorted(name for name in self._owns if (self.out / name).exists() or name == RECORD)
        self._record({"owns": owns, "complete": True, **summary})

    def abandon(self) -> None:
        """Close the files being written and remove them (an export stopped half-way)."""
        for relative, handle in self._partial.items():
            if handle is not None:
                handle.close()
            _partial(self.out / relative).unlink(missing_ok=True)
        self._partial.clear()

    def _claim(self, relative: str) -> Path:
        """The path of `relative`, its folder made; recorded as ours first when its name is new here."""
        top = relative.split("/", 1)[0]
        if top not in self._owns:
            raise AssertionError(f"{relative} is outside the names this export owns")
        if top not in self._earlier:
            self._change()
        self._written.add(relative)
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _change(self) -> None:
        """Before the folder first changes: record it as ours (this export's names and the earlier
        one's) and not complete."""
        if not self._changing:
            self._changing = True
            self._record({"owns": sorted(self._owns | self._earlier), "complete": False})

    def _record(self, fields: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"format": RECORD_FORMAT, **fields}, indent=2, ensure_ascii=False) + "\n"
        if not holds(self.out / RECORD, data.encode("utf-8")):
            (self.out / RECORD).write_text(data, encoding="utf-8")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _partials(names: set[str]) -> set[str]:
    """The names of the partial files an export cut off may have left beside `names`."""
    return {name + PARTIAL_SUFFIX for name in names}


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


def _stale(path: Path, relative: str, written: set[str]) -> list[Path]:
    """The files and links at or under `path` (the top-level name `relative`) not in `written`."""
    if path.is_symlink() or path.is_file():
        return [] if relative in written else [path]
    stale = []
    for root, folders, files in os.walk(path):
        for name in [*files, *(folder for folder in folders if (Path(root) / folder).is_symlink())]:
            file = Path(root) / name
            if file.relative_to(path.parent).as_posix() not in written:
                stale.append(file)
    return stale


def _remove_empty_folders(path: Path) -> None:
    """Remove the folders under `path` left empty, and `path` itself when it is."""
    if path.is_symlink() or not path.is_dir():
        return
    for root, _, _ in os.walk(path, topdown=False):
        if not any(Path(root).iterdir()):
            Path(root).rmdir()
