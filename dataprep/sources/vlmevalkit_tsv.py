"""VLMEvalKit's benchmark TSV files (MMBench, SEED-Bench, ScienceQA, AI2D_TEST, ChartQA_TEST, …).

One file per benchmark, tab-separated with a header row, as pandas writes it (`"`-quoted cells
where needed, an empty cell for a missing value). Columns: `index`; `image`, the base64 of the
encoded image, or (64 characters or fewer) the `index` of another row whose image it shares, or a
Python list of base64 strings for several images; `question`; optional `hint`; options `A`, `B`, …
(empty when a row has fewer); `answer` (the option's letter in multiple-choice files); optional
`category`, `l2-category`, `split` and others, kept in the meta. One sample per row, id its `index`.
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import Field

from dataprep.contract.sample import IMAGE_OPENING, Turn
from dataprep.sample import ImageBytes, Record, Reject, Sample
from dataprep.sources._multiple_choice import MultipleChoicePrompt, multiple_choice_turns
from dataprep.sources._vqa_groups import ShortAnswerPrompt
from dataprep.sources.base import Source, SourceOptions

REFERENCE_LENGTH = 64
"""An `image` cell this short names another row's `index` (VLMEvalKit's rule), not image data."""
OPTION_COLUMNS = [chr(code) for code in range(ord("A"), ord("Z") + 1)]
TEXT_COLUMNS = {"index", "image", "image_path", "question", "hint", "answer", *OPTION_COLUMNS}


class VLMEvalKitOptions(SourceOptions):
    file: str
    """The benchmark's `.tsv`, relative to the source path."""
    rows_per_unit: int = Field(250, gt=0)
    """Rows per work unit: a unit parses the file up to its last row, and again, only as far as
    needed, for the images its rows share with others."""
    multiple_choice: MultipleChoicePrompt = MultipleChoicePrompt()
    short_answer: ShortAnswerPrompt = ShortAnswerPrompt()


class VLMEvalKitTSV(Source):
    """Rows of a VLMEvalKit TSV: multiple choice (options given: the answer is a letter) or short
    answer (no options: the answer as written)."""

    name = "vlmevalkit_tsv"
    licence = "the benchmark's own terms (not checked)"
    Options = VLMEvalKitOptions
    options: VLMEvalKitOptions

    @property
    def path(self) -> Path:
        return self.file(self.options.file)

    def inputs(self) -> list[Path]:
        return [self.path]

    def units(self) -> list[str]:
        rows = sum(1 for _ in _rows(self.path))
        size = self.options.rows_per_unit
        return [f"rows[{start}:{min(start + size, rows)}]" for start in range(0, rows, size)]

    def read(self, unit: str) -> Iterator[Record]:
        start, end = (int(bound) for bound in unit.removeprefix("rows[").removesuffix("]").split(":"))
        wanted = {}  # the unit's rows (the file is read up to its last), then the shared images
        for number, row in enumerate(islice(_rows(self.path), end)):
            if number >= start:
                wanted[number] = row
        references = {
            row["image"] for row in wanted.values() if 0 < len(row.get("image", "")) <= REFERENCE_LENGTH
        }
        shared: dict[str, str] = {}
        for row in _rows(self.path) if references else ():
            if row.get("index") in references:
                shared[row["index"]] = row["image"]
                if len(shared) == len(references):
                    break
        for number, row in wanted.items():
            yield self._record(number, row, shared)

    def _record(self, number: int, row: dict[str, str], shared: dict[str, str]) -> Record:
        record_id = row.get("index") or f"row {number + 1}"
        question = row.get("question", "")
        if not question:
            return Reject(record_id, "bad_record", "no question")
        images = _images(row.get("image", ""), shared)
        if isinstance(images, str):
            return Reject(record_id, "bad_image", images)
        hint = row.get("hint", "")
        text = f"{hint}\n{question}" if hint else question
        options = [row[letter] for letter in OPTION_COLUMNS if row.get(letter)]
        answer = row.get("answer", "")
        if options:
            letters = OPTION_COLUMNS[: len(options)]
            if answer not in letters:
                return Reject(record_id, "bad_answer", f"answer {answer!r} is not one of {''.join(letters)}")
            turns = multiple_choice_turns(text, options, letters.index(answer), self.options.multiple_choice)
        else:
            opening = IMAGE_OPENING * len(images)
            turns = [Turn("human", f"{opening}{text}{self.options.short_answer.suffix}"), Turn("gpt", answer)]
        if options and len(images) != 1:
            prefix = IMAGE_OPENING * len(images)
            turns[0] = Turn("human", prefix + turns[0].value.removeprefix(IMAGE_OPENING))
        meta: dict[str, Any] = {key: value for key, value in row.items() if key not in TEXT_COLUMNS and value}
        meta["file"] = self.options.file
        if hint:
            meta["hint"] = hint
        return Sample(record_id, turns, [ImageBytes(data, name=record_id) for data in images], meta)


def _rows(path: Path) -> Iterator[dict[str, str]]:
    """The file's rows as column → cell (an empty cell is ""), as pandas wrote them."""
    csv.field_size_limit(sys.maxsize)  # base64 images are far beyond csv's default 128 KiB cells
    with open(path, encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle, delimiter="\t", quotechar='"', restval="")


def _images(cell: str, shared: dict[str, str]) -> list[bytes] | str:
    """The encoded images of an `image` cell, or what is wrong with it."""
    if not cell:
        return []
    if len(cell) <= REFERENCE_LENGTH:
        if cell not in shared:
            return f"refers to row {cell!r}, which the file does not hold"
        cell = shared[cell]
        if len(cell) <= REFERENCE_LENGTH:
            return "refers to a row whose image is itself a reference"
    if cell.startswith("["):
        try:
            cells = ast.literal_eval(cell)
        except (ValueError, SyntaxError) as error:
            return f"image list does not parse: {error}"
        if not isinstance(cells, list) or not all(isinstance(item, str) for item in cells):
            return "image list is not a list of base64 strings"
    else:
        cells = [cell]
    try:
        return [base64.b64decode(item, validate=True) for item in cells]
    except (binascii.Error, ValueError) as error:
        return f"image is not base64: {error}"
