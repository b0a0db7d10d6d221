"""SynthDoG-EN: synthetic English document pages for OCR (Hugging Face `naver-clova-ix/synthdog-en`).

Parquet shards `data/train-000NN-of-00084-<hash>.parquet` and
`data/validation-00000-of-00001-<hash>.parquet`, columns `image` = struct {bytes, path} (JPEG;
plain binary is read too) and `ground_truth` = JSON `{"gt_parse": {"text_sequence": ...}}`.
One sample per row: an OCR request chosen deterministically from a fixed list, answered with the
page's text sequence.
Work units are runs of at most `unit_rows` rows inside one row group of a shard, read in batches
of `batch_rows`; they follow the rows in order, so the sample order is the shards' row order
whatever the unit size.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import TypeVar

from pydantic import Field, field_validator, model_validator

from dataprep.contract.sample import IMAGE_OPENING, Turn
from dataprep.sample import ImageBytes, Reject, Sample
from dataprep.sources._parquet import image_cell_bytes, open_parquet, parquet_batches
from dataprep.sources.base import Source, SourceOptions

COLUMNS = ["image", "ground_truth"]
UNIT_PATTERN = re.compile(r"(?P<file>.+)#(?P<group>\d+)\[(?P<start>\d+):(?P<end>\d+)\]")
DEFAULT_REQUESTS = (
    "Please recognize the text in the image.",
    "Please extract the text from the image.",
    "Please read all the text in the image.",
    "Transcribe the text shown in the image.",
    "What text is written in this image?",
    "请识别图中的文字。",
    "请提取图片中的文字。",
    "请读出图中的全部文字。",
)
T = TypeVar("T")


def pick(choices: Sequence[T], key: str) -> T:
    """Choose one item deterministically from `key` (same key, same choice, on any machine)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return choices[int.from_bytes(digest[:8], "big") % len(choices)]


class OcrPrompt(SourceOptions):
    """The OCR requests a sample's question is picked from (by its id)."""

    requests: list[str] = Field(default_factory=lambda: list(DEFAULT_REQUESTS), min_length=1)


class SynthdogEnOptions(SourceOptions):
    shards: list[int] | None = Field(None, min_length=1)
    """Shard indices of `split` (0 → `data/<split>-00000-of-*.parquet`); exclusive with `glob`."""
    glob: str | None = None
    """Shard files, a pattern relative to the root; default `data/<split>-*.parquet`."""
    split: str = "train"
    batch_rows: int = Field(256, gt=0)
    """Rows decoded at a time."""
    unit_rows: int = Field(400, gt=0)
    """The most rows of a work unit (a row group is cut into units of this size)."""
    prompt: OcrPrompt = OcrPrompt()

    @field_validator("shards")
    @classmethod
    def _non_negative(cls, shards: list[int] | None) -> list[int] | None:
        if shards is not None and min(shards) < 0:
            raise ValueError("shard indices must be >= 0")
        return shards

    @field_validator("glob")
    @classmethod
    def _relative(cls, pattern: str | None) -> str | None:
        if pattern is not None and (
            PurePosixPath(pattern).is_absolute() or ".." in PurePosixPath(pattern).parts
        ):
            raise ValueError(f"glob {pattern!r} must be relative to the source root, without '..'")
        return pattern

    @model_validator(mode="after")
    def _one_selection(self) -> SynthdogEnOptions:
        if self.shards is not None and self.glob is not None:
            raise ValueError("give either `shards` or `glob`, not both")
        return self


def text_sequence(ground_truth: object) -> str:
    """The page text of a `ground_truth` cell; ValueError says what is wrong with it."""
    if not isinstance(ground_truth, str):
        raise ValueError(f"ground_truth is {type(ground_truth).__name__}, not a string")
    try:
        parsed = json.loads(ground_truth)
    except RecursionError:
        raise ValueError("ground_truth nests too deeply to parse") from None
    gt_parse = parsed.get("gt_parse") if isinstance(parsed, dict) else None
    text = gt_parse.get("text_sequence") if isinstance(gt_parse, dict) else None
    if not isinstance(text, str):
        raise ValueError("ground_truth has no gt_parse.text_sequence string")
    return text


class SynthdogEn(Source):
    name = "synthdog_en"
    licence = "none stated (generator MIT)"
    citation = "Kim, Hong, Yim, Nam, Park, Yim, Hwang, Yun, Han, Park. OCR-free Document Understanding Transformer (Donut, SynthDoG). ECCV 2022."
    version = "1"
    Options = SynthdogEnOptions
    options: SynthdogEnOptions

    def _shard_pattern(self, index: int) -> str:
        return f"data/{self.options.split}-{index:05d}-of-*.parquet"

    def _matches(self, pattern: str) -> list[Path]:
        """Files under the root matching `pattern` (links are followed: Hugging Face snapshots
        link into a blob store; the pattern itself cannot leave the root)."""
        return sorted(path for path in self.root.glob(pattern) if path.is_file())

    def _selected(self) -> tuple[list[Path], list[str]]:
        """The shard files chosen by the options, and descriptions of selections that match none."""
        if self.options.shards is None:
            pattern = self.options.glob or f"data/{self.options.split}-*.parquet"
            files = self._matches(pattern)
            return files, [] if files else [f"no file matches {pattern}"]
        files, unmatched = [], []
        for index in self.options.shards:
            pattern = self._shard_pattern(index)
            matches = self._matches(pattern)
            if len(matches) > 1:
                raise ValueError(
                    f"synthdog_en: shard {index} is ambiguous: {[path.name for path in matches]}"
                )
            files.extend(matches)
            if not matches:
                unmatched.append(f"shard {index}: no file matches {pattern}")
        return files, unmatched

    def inputs(self) -> list[Path]:
        return self._selected()[0]

    def missing(self) -> list[str]:
        return self._selected()[1]

    def _relpath(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _row_runs(self, path: Path) -> Iterator[tuple[int, int, int]]:
        """(row group, first row, end row) of each unit of a shard, rows counted in the file."""
        metadata = open_parquet(path).metadata
        first = 0
        for group in range(metadata.num_row_groups):
            end = first + metadata.row_group(group).num_rows
            for start in range(first, end, self.options.unit_rows):
                yield group, start, min(start + self.options.unit_rows, end)
            first = end

    def units(self) -> list[str]:
        return [
            f"{self._relpath(path)}#{group}[{start}:{end}]"
            for path in self.inputs()
            for group, start, end in self._row_runs(path)
        ]

    def read(self, unit: str) -> Iterator[Sample | Reject]:
        match = UNIT_PATTERN.fullmatch(unit)
        selected = {self._relpath(path): path for path in self.inputs()}
        if match is None or match["file"] not in selected:
            raise ValueError(f"synthdog_en: unknown unit {unit!r}")
        relpath, path = match["file"], selected[match["file"]]
        group, start, end = int(match["group"]), int(match["start"]), int(match["end"])
        runs = list(self._row_runs(path))
        if (group, start, end) not in runs:
            raise ValueError(f"synthdog_en: unknown unit {unit!r}")
        first = next(run[1] for run in runs if run[0] == group)
        stem = PurePosixPath(relpath).name.removesuffix(".parquet")
        split = stem.split("-", 1)[0]
        batches = parquet_batches(
            path, COLUMNS, batch_size=self.options.batch_rows, row_groups=[group], use_threads=False
        )
        row = first  # the first row of the batch
        for batch in batches:
            low, high = max(start - row, 0), min(end - row, batch.num_rows)
            for offset, record in enumerate(batch.slice(low, max(high - low, 0)).to_pylist()):
                number = row + low + offset
                yield self._record(record, f"{stem}:{number}", relpath, number, split)
            row += batch.num_rows
            if row >= end:
                break

    def _record(self, record: dict, sample_id: str, relpath: str, row: int, split: str) -> Sample | Reject:
        try:
            answer = text_sequence(record["ground_truth"])
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            return Reject(sample_id, "bad_record", f"{relpath} row {row}: {error}")
        cell = record["image"]
        data = image_cell_bytes(cell)
        if not data:
            return Reject(sample_id, "image_missing", f"{relpath} row {row}: no image bytes")
        image_path = cell.get("path") if isinstance(cell, dict) else None
        request = pick(self.options.prompt.requests, sample_id)
        return Sample(
            id=sample_id,
            conversations=[Turn("human", IMAGE_OPENING + request), Turn("gpt", answer)],
            images=[ImageBytes(data, name=image_path or "")],
            meta={"file": relpath, "row": row, "image_path": image_path, "split": split},
        )
