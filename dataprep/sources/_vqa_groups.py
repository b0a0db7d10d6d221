"""Short-answer VQA whose questions are grouped per image into one multi-turn conversation.

DVQA, ChartQA and DocVQA publish one record per question; InternVL trains on one conversation
per image with its questions as turns. `GroupedVQASource` does the grouping for them: its units
are hash partitions of the image key (unit k of n keeps only the images whose stable hash is k
modulo n), so every unit streams the question files once and holds only its own images' questions
in memory, while each image's questions still all land in the same unit. A unit checks and builds
only its own questions: the others are dropped as soon as their key is read.

The partition count is sized by work unless `partitions` fixes it: about `unit_questions` questions
a unit, the questions estimated from the files' first MiB, at most `MAX_PARSING_UNITS` (every unit
parses the whole files). It depends on the files alone, never on the workers; samples come unit by
unit, so the count decides their order.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import ijson
from pydantic import Field

from dataprep.contract.sample import IMAGE_OPENING, IMAGE_PLACEHOLDER, Turn
from dataprep.sample import ImageInput, Record, Reject, Sample
from dataprep.sources._json_stream import ijson_backend, plain
from dataprep.sources.base import Source, SourceOptions, parsing_unit_count

UNIT_PREFIX = "part-"


SHORT_ANSWER_SUFFIX = "\nAnswer the question using a single word or phrase."


class ShortAnswerPrompt(SourceOptions):
    """How a question becomes a human turn: the question text, then `suffix`."""

    suffix: str = SHORT_ANSWER_SUFFIX


class GroupedVQAOptions(SourceOptions):
    """Options every grouped short-answer VQA source shares."""

    partitions: int | None = Field(default=None, ge=1, le=100_000)
    """A fixed number of work units; None: sized by `unit_questions`."""
    unit_questions: int = Field(default=250, ge=1)
    """About how many questions a work unit holds when `partitions` is None."""
    prompt: ShortAnswerPrompt = ShortAnswerPrompt()


@dataclass(frozen=True)
class Question:
    """One checked question of an image.

    `order` sorts the turns of a conversation; `fields` are per-turn facts gathered into lists
    aligned with the turns (key = the list's name in the sample meta); `shared` are facts about
    the image itself, taken from its first question; `source` is the file it came from.
    """

    text: str
    answer: str
    order: tuple[Any, ...]
    fields: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class Keyed:
    """A question or reject with the image key that decides its unit (None: no usable key)."""

    key: str | None
    item: Question | Reject


def partition_units(count: int) -> list[str]:
    """The unit names of `count` hash partitions, in order."""
    return [f"{UNIT_PREFIX}{index:05d}-of-{count:05d}" for index in range(count)]


def partition_index(unit: str, count: int) -> int:
    """The partition a unit name stands for, checked against the source's count."""
    if unit not in partition_units(count):
        raise ValueError(f"unknown unit {unit!r}: expected one of {UNIT_PREFIX}NNNNN-of-{count:05d}")
    return int(unit[len(UNIT_PREFIX) :].split("-", 1)[0])


Wanted = Callable[[str | None], bool]
"""Whether a unit keeps the questions of an image key (None: a record with no usable key)."""


def partition_of(key: str | None, count: int) -> int:
    """The partition holding an image key; records with no usable key go to partition 0."""
    if key is None:
        return 0
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def partition_filter(index: int, count: int) -> Wanted:
    """Whether a key is in partition `index` of `count` (the last key's answer is kept: an
    image's questions usually come one after another)."""

    @lru_cache(maxsize=1)
    def wanted(key: str | None) -> bool:
        return partition_of(key, count) == index

    return wanted


def answer_text(value: object) -> str | None:
    """The answer as published text: strings as they are, integers and decimal numbers (as
    ijson reads them) when their text round-trips exactly; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, Decimal) and value.is_finite() and "E" not in str(value):
        return str(value)
    return None


def build_question(
    record_id: str,
    text: object,
    answer: object,
    order: tuple[Any, ...],
    fields: dict[str, Any] | None = None,
    shared: dict[str, Any] | None = None,
    source: str = "",
) -> Question | Reject:
    """A checked question, or the reject saying why the pair cannot become two turns."""
    if not isinstance(text, str) or not text.strip():
        return Reject(record_id, "bad_record", f"question is {text!r}")
    if answer is None:
        return Reject(record_id, "no_answer", "question has no answer")
    reply = answer_text(answer)
    if reply is None:
        return Reject(record_id, "bad_answer", f"answer {answer!r} is not text and cannot be kept losslessly")
    if not reply.strip():
        return Reject(record_id, "no_answer", "answer is empty")
    if IMAGE_PLACEHOLDER in text or IMAGE_PLACEHOLDER in reply:
        return Reject(record_id, "placeholder_in_text", f"{IMAGE_PLACEHOLDER} inside the question or answer")
    try:
        return Question(text, reply, order, plain(fields or {}), plain(shared or {}), source)
    except RecursionError:
        return Reject(record_id, "bad_record", "a field is nested too deeply")


def numbered_questions(
    records: Iterable[object],
    id_key: str,
    image_key: str,
    build: Callable[[int, dict[str, Any]], Question | Reject],
    wanted: Wanted,
) -> Iterator[Keyed]:
    """Questions from records that carry an integer id (`id_key`, also the reject id) and an
    image name (`image_key`, the grouping key); `build(question_id, record)` makes each one.
    Only records whose key is `wanted` are checked and yielded."""
    for position, record in enumerate(records):
        image = record.get(image_key) if isinstance(record, dict) else None
        key = image if isinstance(image, str) and image else None
        if not wanted(key):
            continue
        if not isinstance(record, dict):
            yield Keyed(None, Reject(f"#{position}", "bad_record", f"not an object: {record!r}"))
            continue
        question_id = record.get(id_key)
        record_id = f"#{position}" if question_id is None else str(question_id)
        if key is None:
            yield Keyed(None, Reject(record_id, "bad_record", f"{image_key} is {image!r}"))
        elif not isinstance(question_id, int) or isinstance(question_id, bool):
            yield Keyed(image, Reject(record_id, "bad_record", f"{id_key} is {question_id!r}"))
        else:
            yield Keyed(image, build(question_id, record))


def short_answer_turns(questions: Iterable[Question], suffix: str) -> list[Turn]:
    """Alternating turns, `<image>\\n` opening the first human turn only."""
    turns: list[Turn] = []
    for question in questions:
        opening = IMAGE_OPENING if not turns else ""
        turns.append(Turn("human", f"{opening}{question.text}{suffix}"))
        turns.append(Turn("gpt", question.answer))
    return turns


def stream_json(path: Path, prefix: str) -> Iterator[Any]:
    """Stream the items of the JSON array at `prefix` (ijson syntax, e.g. `item`, `data.item`).

    Numbers that are not integers come back as `Decimal`, keeping their published digits; text is
    exact (see `json_stream`). A file that is not JSON (or not UTF-8), or has no array at `prefix`,
    is an error naming the file.
    """
    parent = prefix.removesuffix("item").removesuffix(".")
    backend = ijson_backend(path)
    found = False
    try:
        with open(path, "rb") as handle:
            for item in backend.items(handle, prefix, use_float=False):
                found = True
                yield item
        if not found:
            with open(path, "rb") as handle:
                container = next(backend.items(handle, parent, use_float=False), None)
            if not isinstance(container, list):
                where = f"at {parent!r}" if parent else "at the top level"
                raise ValueError(f"{path}: expected a JSON array {where}")
    except (ijson.JSONError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


class GroupedVQASource(Source):
    """A source whose per-question records become one conversation per image.

    Subclasses list the questions (`questions`), say where an image is (`image`, or `images` for
    a whole unit) and what a sample's provenance is (`sample_meta`); this class partitions,
    groups, orders and builds the samples.
    """

    Options: ClassVar[type[GroupedVQAOptions]] = GroupedVQAOptions
    options: GroupedVQAOptions

    @abstractmethod
    def questions(self, wanted: Wanted) -> Iterator[Keyed]:
        """The questions of the selected files whose image key is `wanted`, in file order, keyed
        by their image (records of other keys are skipped unchecked)."""

    @abstractmethod
    def estimated_questions(self) -> int:
        """About how many question records the selected files hold (read from their heads)."""

    @abstractmethod
    def image(self, key: str) -> ImageInput:
        """The image a key names."""

    def images(self, keys: list[str]) -> dict[str, ImageInput]:
        """The images of a unit's keys; a key left out becomes an `image_missing` reject."""
        return {key: self.image(key) for key in keys}

    def sample_meta(self, key: str, questions: list[Question]) -> dict[str, Any]:
        """Provenance of one sample (split, file, ...), given its ordered questions."""
        return {}

    def partitions(self) -> int:
        """The number of hash partitions: the `partitions` option, or sized by work."""
        if self.options.partitions is not None:
            return self.options.partitions
        return parsing_unit_count(self.estimated_questions(), self.options.unit_questions)

    def units(self) -> list[str]:
        return partition_units(self.partitions())

    def read(self, unit: str) -> Iterator[Record]:
        count = self.partitions()
        index = partition_index(unit, count)
        groups: dict[str, list[Question]] = {}
        for keyed in self.questions(partition_filter(index, count)):
            if isinstance(keyed.item, Reject):
                yield keyed.item
            elif keyed.key is not None:
                groups.setdefault(keyed.key, []).append(keyed.item)
        images = self.images(list(groups))
        for key, questions in groups.items():
            if key in images:
                yield self.sample(key, questions, images[key])
            else:
                yield Reject(key, "image_missing", "the source holds no image for it")

    def sample(self, key: str, questions: list[Question], image: ImageInput) -> Sample:
        """One conversation from an image's questions, turns in `order`."""
        ordered = sorted(questions, key=lambda question: question.order)
        meta: dict[str, Any] = {**self.sample_meta(key, ordered), **ordered[0].shared}
        for name in ordered[0].fields:
            meta[name] = [question.fields[name] for question in ordered]
        return Sample(
            id=key,
            conversations=short_answer_turns(ordered, self.options.prompt.suffix),
            images=[image],
            meta=meta,
        )
