"""AI2D: science diagrams with multiple-choice questions (Allen AI, `ai2d-all.zip`).

Layout: `images/<n>.png`, `annotations/<n>.png.json`, `questions/<n>.png.json`,
`categories.json`, and optionally `ai2d_test_ids.csv` (one image id per line, no header).
One sample per question. `abcLabel` questions name letters that are not drawn in the plain
image: they use `abc_images/<n>.png` when that folder exists, otherwise the adapter paints
each annotated text box white and writes its `replacementText` into it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from pydantic import Field

from dataprep.paths import UnsafePath, not_a_file
from dataprep.sample import ImageBytes, ImageFile, ImageInput, Reject, Sample
from dataprep.sources._multiple_choice import MultipleChoicePrompt, multiple_choice_turns, png_bytes
from dataprep.sources.base import Source, SourceOptions

QUESTIONS_DIR = "questions"
ANNOTATIONS_DIR = "annotations"
IMAGES_DIR = "images"
ABC_IMAGES_DIR = "abc_images"
DEFAULT_TEST_IDS = "ai2d_test_ids.csv"
EMPTY_OPTION = "{}"
UNIT_PATTERN = re.compile(r"questions\[(\d+):(\d+)\]")
EDGE_SLACK = 0.1
"""How far a text box may reach past the image's edges, as a fraction of its width or height."""

Box = tuple[float, float, float, float]


class Ai2dOptions(SourceOptions):
    test_ids: str | None = None
    """Test image ids file, relative to the root; None: `ai2d_test_ids.csv` when it exists."""
    exclude_test: bool = True
    """Reject (reason `test_split`) every question on an image listed in the test ids."""
    only_test: bool = False
    """Read the test split, as an eval set: keep the questions on images in the test ids and reject
    (reason `train_split`) the others; `exclude_test` is then not applied."""
    files_per_unit: int = Field(50, gt=0)
    """Question files per work unit (about 3 questions each; units are runs of files in numeric
    order, so the sample order does not depend on it)."""
    prompt: MultipleChoicePrompt = MultipleChoicePrompt()


class RenderError(Exception):
    """A letter image could not be rendered; `reason` is the reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _file_order(path: Path) -> tuple[int, int, str]:
    """Numeric image ids first, in numeric order (`2.png.json` before `10.png.json`)."""
    stem = path.name.split(".", 1)[0]
    return (0, int(stem), path.name) if stem.isdigit() else (1, 0, path.name)


def _image_id(name: str) -> str:
    """`"100.png"` or `"100"` → `"100"`."""
    return name.strip().removesuffix(".png")


class Ai2d(Source):
    name = "ai2d"
    licence = "non-commercial, no redistribution"
    citation = (
        "Kembhavi, Salvato, Kolve, Seo, Hajishirzi, Farhadi. A Diagram Is Worth a Dozen Images. ECCV 2016."
    )
    version = "3"
    Options = Ai2dOptions
    options: Ai2dOptions

    def _test_ids_path(self) -> Path | None:
        if self.options.test_ids is not None:
            return self.file(self.options.test_ids)
        default = self.root / DEFAULT_TEST_IDS
        return default if default.exists() else None

    def inputs(self) -> list[Path]:
        """Every question file, the test ids when used, and the annotation files when letter
        images are rendered here (they are not read when `abc_images/` exists)."""
        found = self._question_files()
        if not (self.root / ABC_IMAGES_DIR).is_dir():
            found += sorted((self.root / ANNOTATIONS_DIR).glob("*.json"), key=_file_order)
        test_ids = self._test_ids_path()
        return [*found, test_ids] if test_ids is not None else found

    def missing(self) -> list[str]:
        absent = [] if self._question_files() else [f"{self.root / QUESTIONS_DIR}/*.json (no question files)"]
        test_ids = self._test_ids_path()
        return absent + ([str(test_ids)] if test_ids is not None and not test_ids.exists() else [])

    def _question_files(self) -> list[Path]:
        return sorted((self.root / QUESTIONS_DIR).glob("*.json"), key=_file_order)

    def units(self) -> list[str]:
        count = len(self._question_files())
        size = self.options.files_per_unit
        return [f"questions[{start}:{min(start + size, count)}]" for start in range(0, count, size)]

    def _test_ids(self) -> frozenset[str]:
        path = self._test_ids_path()
        if path is None:
            return frozenset()
        lines = path.read_text(encoding="utf-8").splitlines()
        return frozenset(_image_id(line) for line in lines if line.strip())

    def read(self, unit: str) -> Iterator[Sample | Reject]:
        match = UNIT_PATTERN.fullmatch(unit)
        if match is None:
            raise ValueError(f"ai2d: unknown unit {unit!r}")
        start, end = int(match[1]), int(match[2])
        test_ids = self._test_ids()
        for path in self._question_files()[start:end]:
            yield from self._read_question_file(path, test_ids)

    def _read_question_file(self, path: Path, test_ids: frozenset[str]) -> Iterator[Sample | Reject]:
        relpath = path.relative_to(self.root).as_posix()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"ai2d: cannot read question file {relpath}: {error}") from error
        if not isinstance(data, dict) or not isinstance(data.get("questions"), dict):
            raise ValueError(f"ai2d: {relpath} has no 'questions' object")
        image_name = str(data.get("imageName") or path.name.removesuffix(".json"))
        in_test = _image_id(image_name) in test_ids
        letter_image: ImageInput | RenderError | None = None
        for index, (question, entry) in enumerate(data["questions"].items()):
            record_id = entry.get("questionId") if isinstance(entry, dict) else None
            sample_id = str(record_id or f"{image_name}-{index}")
            if in_test and self.options.exclude_test and not self.options.only_test:
                yield Reject(sample_id, "test_split", f"image {image_name} is in the test ids")
                continue
            if self.options.only_test and not in_test:
                yield Reject(sample_id, "train_split", f"image {image_name} is not in the test ids")
                continue
            problem = _entry_problem(entry)
            if problem:
                yield Reject(sample_id, "bad_record", f"{relpath}: {problem}")
                continue
            options, answer_index = _kept_options(entry["answerTexts"], entry["correctAnswer"])
            if answer_index is None:
                detail = f"correctAnswer {entry['correctAnswer']} of {entry['answerTexts']!r}"
                yield Reject(sample_id, "bad_answer", detail)
                continue
            image: ImageInput | RenderError = ImageFile(self.root, f"{IMAGES_DIR}/{image_name}")
            if entry["abcLabel"]:
                if letter_image is None:
                    letter_image = self._letter_image(image_name)
                image = letter_image
            if isinstance(image, RenderError):
                yield Reject(sample_id, image.reason, image.detail)
                continue
            meta: dict[str, Any] = {
                "questionId": record_id,
                "imageName": image_name,
                "abcLabel": entry["abcLabel"],
                "answerTexts": entry["answerTexts"],
                "correctAnswer": entry["correctAnswer"],
                "dropped_options": len(entry["answerTexts"]) - len(options),
                "file": relpath,
            }
            if test_ids:
                meta["split"] = "test" if in_test else "train"
            turns = multiple_choice_turns(question, options, answer_index, self.options.prompt)
            yield Sample(sample_id, turns, [image], meta)

    def _letter_image(self, image_name: str) -> ImageInput | RenderError:
        """The image an `abcLabel` question refers to: pre-rendered, or rendered here."""
        if (self.root / ABC_IMAGES_DIR).is_dir():
            return ImageFile(self.root, f"{ABC_IMAGES_DIR}/{image_name}")
        try:
            return ImageBytes(png_bytes(self._render_letters(image_name)), name=image_name)
        except RenderError as error:
            return error
        except UnsafePath as error:
            return RenderError("unsafe_path", str(error))

    def _render_letters(self, image_name: str) -> Image.Image:
        annotation_relpath = f"{ANNOTATIONS_DIR}/{image_name}.json"
        path = self.file(annotation_relpath)
        try:
            if problem := not_a_file(path.stat().st_mode):  # a named pipe would block the read forever
                raise RenderError("bad_annotation", f"{annotation_relpath} {problem}")
            annotation = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise RenderError("annotation_missing", f"{annotation_relpath} does not exist") from error
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RenderError("bad_annotation", f"{annotation_relpath}: {error}") from error
        boxes = _letter_boxes(annotation)
        if isinstance(boxes, str):
            raise RenderError("bad_annotation", f"{annotation_relpath}: {boxes}")
        image_relpath = f"{IMAGES_DIR}/{image_name}"
        path = self.file(image_relpath)
        if not path.is_file():
            raise RenderError("image_missing", f"{image_relpath} does not exist")
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise RenderError("image_unreadable", f"{image_relpath}: {error}") from error
        for box, _ in boxes:
            if not _near_image(box, image.size):
                size = f"{image.width}x{image.height}"
                raise RenderError(
                    "bad_annotation", f"{annotation_relpath}: text box {box} is outside the {size} image"
                )
        draw = ImageDraw.Draw(image)
        for (x1, y1, x2, y2), letter in boxes:
            draw.rectangle([x1, y1, x2, y2], fill="white")
            font = ImageFont.load_default(size=max(10, round(y2 - y1)))
            draw.text(((x1 + x2) / 2, (y1 + y2) / 2), letter, fill="black", font=font, anchor="mm")
        return image


def _entry_problem(entry: object) -> str | None:
    """Why a question entry is malformed, or None."""
    if not isinstance(entry, dict):
        return "question entry is not an object"
    options = entry.get("answerTexts")
    if not isinstance(options, list) or not all(isinstance(option, str) for option in options):
        return "answerTexts is not a list of strings"
    if not isinstance(entry.get("correctAnswer"), int) or isinstance(entry["correctAnswer"], bool):
        return "correctAnswer is not an integer"
    if not isinstance(entry.get("abcLabel"), bool):
        return "abcLabel is not a boolean"
    return None


def _kept_options(options: list[str], correct: int) -> tuple[list[str], int | None]:
    """Drop the literal `"{}"` options; the answer follows its option (None if it is gone)."""
    kept = [option for option in options if option != EMPTY_OPTION]
    if not 0 <= correct < len(options) or options[correct] == EMPTY_OPTION:
        return kept, None
    return kept, correct - options[:correct].count(EMPTY_OPTION)


def _letter_boxes(annotation: object) -> list[tuple[Box, str]] | str:
    """Each text box with a `replacementText`, as ((x1, y1, x2, y2), letter); or what is wrong."""
    texts = annotation.get("text") if isinstance(annotation, dict) else None
    if not isinstance(texts, dict):
        return "no 'text' object"
    boxes = []
    for key, entry in sorted(texts.items()):
        letter = entry.get("replacementText") if isinstance(entry, dict) else None
        if not letter:
            continue
        try:
            (xa, ya), (xb, yb) = entry["rectangle"]
            xa, ya, xb, yb = (_coordinate(value) for value in (xa, ya, xb, yb))
        except (KeyError, TypeError, ValueError) as error:
            return f"text {key} has no usable rectangle ({error})"
        boxes.append(((min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)), str(letter)))
    return boxes


def _coordinate(value: object) -> float:
    """A rectangle coordinate as a finite float; ValueError when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"coordinate {value!r} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"coordinate {value} is beyond float range") from None
    if not math.isfinite(number):
        raise ValueError(f"coordinate {value!r} is not finite")
    return number


def _near_image(box: Box, size: tuple[int, int]) -> bool:
    """Whether a box lies on the image, reaching at most `EDGE_SLACK` of its size past an edge."""
    x1, y1, x2, y2 = box
    width, height = size
    slack_x, slack_y = width * EDGE_SLACK, height * EDGE_SLACK
    return -slack_x <= x1 and x2 <= width + slack_x and -slack_y <= y1 and y2 <= height + slack_y
