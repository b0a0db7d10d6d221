"""The shared core of the adapters whose upstream is LLaVA-schema conversation records.

A record is `{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}, ...]}` (plus
optional `width`/`height`), stored one per line in a `.jsonl` file or as elements of one `.json`
array. `ConversationFileSource` turns such files into work units and records into samples;
subclasses only say which files to read and where a record's image names point.

Units keep memory bounded and let any file spread over many workers. They are sized by work:
about `unit_records` records (each costs an image check), and at most `unit_bytes` of annotations.
The record count is estimated from the file's first MiB (newlines, or `"conversations"` keys),
so listing units reads little, and the units depend on the file alone, never on the workers:
- `.jsonl`: byte ranges `<file>@<start>-<end>`; a unit keeps the lines that *start* inside its
  range, so ranges need no alignment when listed (a unit counts the newlines before its range
  once, at memory speed, to give true line numbers);
- `.json` arrays (which cannot be cut by byte offset): strides `<file>#<k>/<n>`; unit k streams
  the whole array with ijson and keeps the elements whose index is k modulo n. Every unit parses
  the whole file, so records alone cut an array into at most `MAX_PARSING_UNITS` strides (enough
  for a 64-core cluster; parsing then stays a fraction of the image checks).
"""

from __future__ import annotations

import json
import math
import os
from abc import abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import ijson
from pydantic import Field

from dataprep.contract.sample import (
    IMAGE_OPENING,
    IMAGE_PLACEHOLDER,
    Turn,
    placeholder_first,
    turn_order_problem,
)
from dataprep.sample import ImageFile, Record, Reject, Sample
from dataprep.sources._json_stream import estimated_count, ijson_backend, plain
from dataprep.sources.base import MAX_PARSING_UNITS, Source, SourceOptions

DEFAULT_UNIT_BYTES = 64 * 2**20
DEFAULT_UNIT_RECORDS = 500
MAX_LINE_BYTES = 64 * 2**20
"""A `.jsonl` line longer is a `bad_record` reject, skipped unread (a record is a few KB)."""

ImagePlacement = Literal["keep", "front"]


class ConversationFileOptions(SourceOptions):
    """Options every conversation-file adapter shares.

    `image_placement`: "keep" leaves a matching `<image>` where the record put it; "front" moves
    the placeholder of a single-image record to the start of the first human turn ("<image>\\n").
    Either way a single-image record without any placeholder gets "<image>\\n" prepended.
    `unit_records`, `unit_bytes`: about how many records, and at most how many annotation bytes
    (approximately, for a `.json` array), a work unit holds.
    """

    image_placement: ImagePlacement = "front"
    unit_records: int = Field(default=DEFAULT_UNIT_RECORDS, ge=1)
    unit_bytes: int = Field(default=DEFAULT_UNIT_BYTES, ge=1)


class ImageRootOptions(ConversationFileOptions):
    """Options of the adapters whose image paths are relative to one `image_root` folder
    (relative to the source path unless absolute)."""

    image_root: str = "."


class BadRecord(ValueError):
    """A record whose fields have the wrong shape; the message is the reject detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def annotation_kind(name: str) -> Literal["jsonl", "json"]:
    """Whether an annotation file holds JSON lines or one JSON array, by its suffix."""
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    raise ValueError(f"annotation file {name!r} must end in .jsonl (JSON lines) or .json (a JSON array)")


def under(root: Path, name: str) -> Path:
    """A path from the recipe: `name` itself when absolute, else relative to `root`."""
    return Path(name) if os.path.isabs(name) else root / name


def place_images(values: list[str], image_count: int, placement: ImagePlacement) -> list[str]:
    """Turn texts (alternating human/gpt) with one `<image>` per image in human turns.

    Raises `BadRecord("placeholder_mismatch", ...)` when the placeholders cannot match the images.
    """
    for index in range(1, len(values), 2):
        if IMAGE_PLACEHOLDER in values[index]:
            raise BadRecord("placeholder_mismatch", f"gpt turn {index} holds {IMAGE_PLACEHOLDER}")
    holders = [index for index in range(0, len(values), 2) if IMAGE_PLACEHOLDER in values[index]]
    count = sum(values[index].count(IMAGE_PLACEHOLDER) for index in holders)
    placed = list(values)
    if image_count == 1 and count == 0:
        placed[0] = IMAGE_OPENING + placed[0]
    elif count != image_count:
        raise BadRecord(
            "placeholder_mismatch", f"{count} {IMAGE_PLACEHOLDER} placeholders for {image_count} images"
        )
    elif placement == "front" and image_count == 1 and not placed[0].startswith(IMAGE_OPENING):
        placed = placeholder_first(placed)
    return placed


def record_id(raw: dict[str, Any], fallback: str) -> str:
    """The record's own id as a string, or `fallback` when it has none."""
    value = raw.get("id")
    if value is None or value == "":
        return fallback
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRecord("bad_record", f"id must be a string or an integer, got {value!r}")
    return str(value)


def image_names(raw: dict[str, Any]) -> list[str]:
    """The record's image paths: none for text-only records (no `image`, or "")."""
    value = raw.get("image")
    if value is None or value == "":
        return []
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(name, str) and name for name in names):
        raise BadRecord("bad_record", f"image must be a path or a list of paths, got {value!r}")
    return names


def turns_of(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """The (role, text) pairs of the record, checked to alternate human/gpt from human."""
    if "conversations" not in raw:
        raise BadRecord("bad_record", "the record has no `conversations` field")
    conversations = raw["conversations"]
    if not isinstance(conversations, list):
        raise BadRecord("bad_record", "conversations must be a list of turns")
    pairs = []
    for index, turn in enumerate(conversations):
        if not (isinstance(turn, dict) and isinstance(turn.get("from"), str)):
            raise BadRecord("bad_record", f"turn {index} is not an object with a string 'from'")
        if not isinstance(turn.get("value"), str):
            raise BadRecord("bad_record", f"turn {index} has no string 'value'")
        pairs.append((turn["from"], turn["value"]))
    problem = turn_order_problem([role for role, _ in pairs])
    if problem:
        raise BadRecord("bad_conversation", problem)
    return pairs


def to_record(
    raw: Any,
    *,
    fallback_id: str,
    where: dict[str, Any],
    locate: Callable[[str], ImageFile],
    placement: ImagePlacement,
) -> Record:
    """One raw record as a `Sample`, or a `Reject` saying what is wrong with it.

    `where` (file and line or index) starts the sample meta and every reject detail; `locate`
    maps an image name of the record to the file to read.
    """
    position = ", ".join(f"{key} {value}" for key, value in where.items())
    if not isinstance(raw, dict):
        return Reject(fallback_id, "bad_record", f"{position}: expected an object, got {type(raw).__name__}")
    try:
        sample_id = record_id(raw, fallback_id)
    except BadRecord as problem:
        return Reject(fallback_id, problem.reason, f"{position}: {problem}")
    try:
        names = image_names(raw)
        pairs = turns_of(raw)
        values = place_images([value for _, value in pairs], len(names), placement)
    except BadRecord as problem:
        return Reject(sample_id, problem.reason, f"{position}: {problem}")
    meta = dict(where)
    if names:
        meta["image"] = raw["image"]
    for key in ("width", "height"):
        value = raw.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            meta[key] = value
    turns = [Turn(role, value) for (role, _), value in zip(pairs, values, strict=True)]
    return Sample(sample_id, turns, [locate(name) for name in names], meta)


def count_newlines(path: Path, limit: int, chunk: int = 1 << 20) -> int:
    """How many newlines the first `limit` bytes of a file hold."""
    total = 0
    with open(path, "rb") as handle:
        while limit > 0 and (block := handle.read(min(chunk, limit))):
            total += block.count(b"\n")
            limit -= len(block)
    return total


def estimated_records(path: Path, kind: Literal["jsonl", "json"]) -> int:
    """About how many records an annotation file holds (lines, or `"conversations"` keys)."""
    return estimated_count(path, b"\n" if kind == "jsonl" else b'"conversations"')


def jsonl_lines(
    path: Path, start: int, end: int, max_line: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | None]]:
    """(1-based line number, raw line) of every line that starts in the byte range [start, end); a
    line longer than `max_line` bytes comes as None, skipped without being held in memory."""
    with open(path, "rb") as handle:
        if start > 0:
            handle.seek(start - 1)
            _skip_line(handle)
        number = count_newlines(path, handle.tell()) + 1
        while handle.tell() < end and (line := handle.readline(max_line + 1)):
            if len(line) > max_line:
                if not line.endswith(b"\n"):  # else the line ended just past the limit
                    _skip_line(handle)
                yield number, None
            else:
                yield number, line
            number += 1


def _skip_line(handle: BinaryIO, chunk: int = 1 << 20) -> None:
    """Move past the next newline, reading at most `chunk` bytes at a time."""
    while (part := handle.readline(chunk)) and not part.endswith(b"\n"):
        pass


def json_array_items(path: Path, stride: int, offset: int) -> Iterator[tuple[int, Any]]:
    """(index, element) of the elements of a JSON array file whose index is `offset` mod `stride`,
    read exactly (see `json_stream`): integers of any size, other numbers as `Decimal`.

    Raises `ValueError` naming the file when it is not a well-formed JSON array (or not UTF-8).
    """
    index = -1
    backend = ijson_backend(path)
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if not head.startswith(b"["):
            raise ValueError(f"{path} does not hold a JSON array")
        handle.seek(0)
        if handle.read(3) != b"\xef\xbb\xbf":
            handle.seek(0)
        try:
            for index, item in enumerate(backend.items(handle, "item", use_float=False)):
                if index % stride == offset:
                    yield index, item
        except (ijson.JSONError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: malformed JSON after element {index}: {error}") from error


class ConversationFileSource(Source):
    """Base of the adapters reading LLaVA-schema records from `.jsonl` / `.json` annotation files."""

    options: ConversationFileOptions

    @abstractmethod
    def annotation_files(self) -> list[Path]:
        """The annotation files to read, in order."""

    @abstractmethod
    def image(self, name: str) -> ImageFile:
        """The image file a record's image name stands for."""

    def extra_meta(self) -> dict[str, Any]:
        """Fields added to every sample's meta (e.g. the subset)."""
        return {}

    def inputs(self) -> list[Path]:
        return self.annotation_files()

    def _files(self) -> dict[str, Path]:
        """Annotation files by the name units and meta use: their path relative to the root."""
        return {Path(os.path.relpath(path, self.root)).as_posix(): path for path in self.annotation_files()}

    def units(self) -> list[str]:
        names = []
        for name, path in self._files().items():
            size = path.stat().st_size
            by_bytes = max(1, math.ceil(size / self.options.unit_bytes))
            by_records = math.ceil(estimated_records(path, annotation_kind(name)) / self.options.unit_records)
            if annotation_kind(name) == "jsonl":
                step = self.options.unit_bytes if by_bytes >= by_records else math.ceil(size / by_records)
                count = max(1, math.ceil(size / step))
                names += [f"{name}@{k * step}-{min((k + 1) * step, size)}" for k in range(count)]
            else:
                count = max(by_bytes, min(by_records, MAX_PARSING_UNITS))
                names += [f"{name}#{k}/{count}" for k in range(count)]
        return names

    def read(self, unit: str) -> Iterator[Record]:
        files = self._files()
        name, _, span = unit.rpartition("@")
        if name in files and annotation_kind(name) == "jsonl":
            start, _, end = span.partition("-")
            yield from self._read_jsonl(name, files[name], int(start), int(end))
            return
        name, _, stride = unit.rpartition("#")
        if name in files and annotation_kind(name) == "json":
            offset, _, count = stride.partition("/")
            yield from self._read_json_array(name, files[name], int(count), int(offset))
            return
        raise ValueError(f"unknown unit {unit!r} of {type(self).__name__}")

    def _convert(self, raw: Any, fallback_id: str, where: dict[str, Any]) -> Record:
        record = to_record(
            raw,
            fallback_id=fallback_id,
            where=where,
            locate=self.image,
            placement=self.options.image_placement,
        )
        if isinstance(record, Sample):
            record.meta.update(self.extra_meta())
        return record

    def _read_jsonl(self, name: str, path: Path, start: int, end: int) -> Iterator[Record]:
        for number, line in jsonl_lines(path, start, end):
            fallback_id = f"{name}:{number}"
            if line is None:
                detail = f"file {name}, line {number}: longer than {MAX_LINE_BYTES:,} bytes"
                yield Reject(fallback_id, "bad_record", detail)
                continue
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except (ValueError, RecursionError) as error:
                problem = (
                    f"{error.msg} at character {error.pos}"
                    if isinstance(error, json.JSONDecodeError)
                    else error
                )
                yield Reject(
                    fallback_id, "bad_record", f"file {name}, line {number}: invalid JSON: {problem}"
                )
                continue
            yield self._convert(raw, fallback_id, {"file": name, "line": number})

    def _read_json_array(self, name: str, path: Path, stride: int, offset: int) -> Iterator[Record]:
        for index, raw in json_array_items(path, stride, offset):
            fallback_id = f"{name}#{index}"
            try:
                record = plain(raw)
            except RecursionError:
                yield Reject(fallback_id, "bad_record", f"file {name}, index {index}: nested too deeply")
                continue
            yield self._convert(record, fallback_id, {"file": name, "index": index})


class ImageRootSource(ConversationFileSource):
    """A conversation-file adapter whose image paths are relative to its `image_root` option,
    the one folder its images may come from."""

    options: ImageRootOptions

    @property
    def image_root(self) -> Path:
        return under(self.root, self.options.image_root)

    def roots(self) -> list[Path]:
        return [self.image_root]

    def image(self, name: str) -> ImageFile:
        return ImageFile(self.image_root, name)
