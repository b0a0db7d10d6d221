"""GeoQA+: Chinese geometry problems with four choices, stored as pickles of numpy figures.

Files (`SCNU203/GeoQA-Plus`): `GeoQA-train.pk`, `Mix-train.pk`, `Backtrans-train.pk`,
`new-test.pk`; each is a list of dicts with `id`, `image` (uint8 grayscale H×W array),
`subject`, `choices`, `label` (0-based), `manual_program`, `numbers`, `choice_nums`,
`formal_point`, `token_list`. Pickles run code when loaded, so they are read with an
unpickler that resolves only the handful of globals plain containers and numpy arrays need.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image
from pydantic import Field

from dataprep.sample import ImageBytes, Reject, Sample
from dataprep.sources._multiple_choice import MultipleChoicePrompt, multiple_choice_turns, png_bytes
from dataprep.sources.base import Source, SourceOptions, parsing_unit_count

REQUIRED_KEYS = ("id", "image", "subject", "choices", "label")


class GeoQaPlusOptions(SourceOptions):
    files: list[str] = Field(default_factory=lambda: ["Mix-train.pk"], min_length=1)
    """Pickles to read, relative to the root."""
    unit_records: int = Field(500, gt=0)
    """About how many problems a work unit holds (a pickle is cut into at most 64
    runs of consecutive problems; each unit loads the whole pickle)."""
    prompt: MultipleChoicePrompt = MultipleChoicePrompt()


class ForbiddenPickle(pickle.UnpicklingError):
    """A pickle asked for a global outside the allowed set; nothing it names was imported or run."""

    def __init__(self, path: Path, module: str, name: str) -> None:
        super().__init__(
            f"{path}: refused pickle global {module}.{name} "
            "(only plain containers and numpy arrays may be unpickled)"
        )
        self.path = path
        self.module = module
        self.name = name


@cache
def allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """The only globals a GeoQA+ pickle may name, under numpy 1.x and 2.x module names."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    found: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,  # how protocol 2 writes bytes
    }
    for builtins in ("builtins", "__builtin__"):  # protocol 2 writes the Python 2 name
        found[(builtins, "set")] = set
        found[(builtins, "frozenset")] = frozenset
    for package in ("numpy.core", "numpy._core"):
        found[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        found[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        found[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return found


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles store bytes as `_codecs.encode(text, "latin1")`; allow that codec only."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals from `allowed_globals()` only; anything else raises `ForbiddenPickle`."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return allowed_globals()[(module, name)]
        except KeyError:
            raise ForbiddenPickle(self.path, module, name) from None


def load_pickle(path: Path) -> Any:
    """Unpickle `path` without running anything the stream names; a cut, corrupt or refused
    stream is a ValueError naming the file."""
    with open(path, "rb") as handle:
        try:
            return RestrictedUnpickler(handle, path).load()
        except ForbiddenPickle:
            raise
        except (EOFError, pickle.UnpicklingError) as error:
            raise ValueError(f"{path}: cannot be unpickled: {error or 'it ends early'}") from None


def _image_problem(image: object) -> str | None:
    """Why an `image` value is not a uint8 H×W (or H×W×1/3/4) array, or None."""
    if not isinstance(image, np.ndarray):
        return f"image is {type(image).__name__}, not an array"
    if image.dtype != np.uint8:
        return f"image dtype is {image.dtype}, not uint8"
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        return f"image shape {image.shape} is not H×W or H×W×1/3/4"
    if not image.size:
        return f"image shape {image.shape} is empty"
    return None


def _record_problem(record: object) -> str | None:
    """Why a pickled record lacks the fields a sample needs, or None."""
    if not isinstance(record, dict):
        return f"record is {type(record).__name__}, not a dict"
    absent = [key for key in REQUIRED_KEYS if key not in record]
    if absent:
        return f"missing keys {absent}"
    if not isinstance(record["id"], int | str | np.integer):
        return f"id {record['id']!r} is not an integer or string"
    if not isinstance(record["subject"], str) or not record["subject"].strip():
        return "subject is not a non-empty string"
    choices = record["choices"]
    if not isinstance(choices, list | tuple) or not choices or not all(isinstance(c, str) for c in choices):
        return "choices is not a list of strings"
    if not isinstance(record["label"], int | np.integer) or isinstance(record["label"], bool):
        return f"label {record['label']!r} is not an integer"
    return None


class GeoQaPlus(Source):
    name = "geoqa_plus"
    licence = "none stated"
    citation = "Cao, Xiao. An Augmented Benchmark Dataset for Geometric Question Answering through Dual Parallel Text Encoding. COLING 2022."
    version = "1"
    Options = GeoQaPlusOptions
    options: GeoQaPlusOptions

    def inputs(self) -> list[Path]:
        return [self.file(name) for name in self.options.files]

    def _problems(self, name: str) -> list[Any]:
        """The list of problems a pickle holds (a ValueError naming it when it holds no list)."""
        records = load_pickle(self.file(name))
        if not isinstance(records, list):
            raise ValueError(f"geoqa_plus: {name} holds a {type(records).__name__}, not a list of problems")
        return records

    def units(self) -> list[str]:
        """`<file>#<k>/<n>`: the k-th of n runs of consecutive problems; n is sized by the file's
        problem count (the pickle is loaded once here to count them)."""
        names = []
        for name in self.options.files:
            count = len(self._problems(name))
            parts = parsing_unit_count(count, self.options.unit_records)
            names += [f"{name}#{part}/{parts}" for part in range(parts)]
        return names

    def read(self, unit: str) -> Iterator[Sample | Reject]:
        name, _, run = unit.rpartition("#")
        part, _, parts = run.partition("/")
        if name not in self.options.files or not (
            part.isdigit() and parts.isdigit() and int(part) < int(parts)
        ):
            raise ValueError(f"geoqa_plus: unknown unit {unit!r}")
        records = self._problems(name)
        start, end = (len(records) * k // int(parts) for k in (int(part), int(part) + 1))
        stem = PurePosixPath(name).stem
        split = "test" if "test" in stem.lower() else "train"
        for index in range(start, end):
            record = records[index]
            has_id = isinstance(record, dict) and "id" in record
            sample_id = f"{stem}:{record['id'] if has_id else f'#{index}'}"
            problem = _record_problem(record)
            if problem:
                yield Reject(sample_id, "bad_record", f"{name}[{index}]: {problem}")
                continue
            label, choices = int(record["label"]), list(record["choices"])
            if not 0 <= label < len(choices):
                yield Reject(sample_id, "bad_answer", f"label {label} for {len(choices)} choices")
                continue
            image_problem = _image_problem(record["image"])
            if image_problem:
                yield Reject(sample_id, "bad_image", f"{name}[{index}]: {image_problem}")
                continue
            record_id = record["id"].item() if isinstance(record["id"], np.integer) else record["id"]
            array = record["image"]
            figure = Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array)
            yield Sample(
                id=sample_id,
                conversations=multiple_choice_turns(record["subject"], choices, label, self.options.prompt),
                images=[ImageBytes(png_bytes(figure), name=f"{record_id}.png")],
                meta={"id": record_id, "label": label, "file": name, "split": split},
            )
