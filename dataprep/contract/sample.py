"""The shard sample: the conversation rules and the typed sample a shard's `<key>.json` holds.

A sample json has `source` (its recipe entry), `id` (the original id), `images` (member suffixes
in order), `image_sizes` (`[width, height]` per image), `conversations` (human/gpt turns,
alternating from human, ending with gpt, one `<image>` per image, all in human turns) and `meta`
(provenance). `parse_sample` is the one check of it, for the build and every reader alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from dataprep.files import canonical_json

IMAGE_PLACEHOLDER = "<image>"
IMAGE_OPENING = IMAGE_PLACEHOLDER + "\n"
"""How a single-image prompt opens (LLaVA's and InternVL's layout): the placeholder on its own line."""

Role = Literal["human", "gpt"]


class SampleError(ValueError):
    """A sample json outside the contract; the message names the problem."""


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: Role
    value: str

    def to_json(self) -> dict[str, str]:
        return {"from": self.role, "value": self.value}


def turn_order_problem(roles: Sequence[object]) -> str | None:
    """Why a sequence of turn roles is not human/gpt alternating from human, or None."""
    if not roles:
        return "no turns"
    for index, role in enumerate(roles):
        expected = "human" if index % 2 == 0 else "gpt"
        if role != expected:
            return f"turn {index} is from {role!r}, expected {expected!r}"
    if len(roles) % 2:
        return "the conversation ends with a human turn"
    return None


def without_placeholder(text: str) -> str:
    """`text` without its first `<image>` and one newline next to it (the following one first)."""
    start = text.index(IMAGE_PLACEHOLDER)
    end = start + len(IMAGE_PLACEHOLDER)
    if text.startswith("\n", end):
        return text[:start] + text[end + 1 :]
    if start > 0 and text[start - 1] == "\n":
        return text[: start - 1] + text[end:]
    return text[:start] + text[end:]


def placeholder_first(texts: Sequence[str]) -> list[str]:
    """Turn texts whose one `<image>` is moved to the opening of the first turn (`<image>\\n`)."""
    holder = next(index for index, text in enumerate(texts) if IMAGE_PLACEHOLDER in text)
    moved = list(texts)
    moved[holder] = without_placeholder(moved[holder])
    moved[0] = IMAGE_OPENING + moved[0]
    return moved


class Conversation(Protocol):
    """What the conversation rules look at: a shard sample, or an adapter's sample before its images
    are loaded."""

    @property
    def conversations(self) -> Sequence[Turn]: ...

    @property
    def images(self) -> Sequence[object]: ...


def conversation_problem(sample: Conversation) -> str | None:
    """Why a sample's conversation breaks the contract, or None when it is well formed (else images
    would fill another sample's placeholders, or a reply would be trained on image tokens)."""
    turns, images = sample.conversations, len(sample.images)
    problem = turn_order_problem([turn.role for turn in turns])
    if problem:
        return problem
    if any(IMAGE_PLACEHOLDER in turn.value for turn in turns if turn.role == "gpt"):
        return f"{IMAGE_PLACEHOLDER} placeholder in a gpt turn"
    placeholders = sum(turn.value.count(IMAGE_PLACEHOLDER) for turn in turns if turn.role == "human")
    if placeholders != images:
        return f"{placeholders} {IMAGE_PLACEHOLDER} placeholders for {images} images"
    return None


@dataclass(frozen=True)
class ShardSample:
    """One sample as a shard holds it; constructing one checks the conversation rules."""

    source: str
    id: str
    images: list[str]
    image_sizes: list[list[int]]
    conversations: list[Turn]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if problem := conversation_problem(self):
            raise SampleError(problem)
        if len(self.image_sizes) != len(self.images):
            raise SampleError(f"{len(self.image_sizes)} image sizes for {len(self.images)} images")

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "id": self.id,
            "images": self.images,
            "image_sizes": self.image_sizes,
            "conversations": [turn.to_json() for turn in self.conversations],
            "meta": self.meta,
        }

    def to_bytes(self) -> bytes:
        """The `<key>.json` member: canonical JSON."""
        return canonical_json(self.to_json())


def parse_sample(record: Any) -> ShardSample:
    """The typed sample of a decoded sample json; raises SampleError naming the first problem."""
    if not isinstance(record, dict):
        raise SampleError(f"the sample json is a {type(record).__name__}, not an object")
    if not isinstance(record.get("source"), str):
        raise SampleError("`source` is not a text")
    images, turns = record.get("images"), record.get("conversations")
    if not isinstance(images, list) or not all(isinstance(suffix, str) for suffix in images):
        raise SampleError("`images` is not a list of member suffixes")
    if not isinstance(turns, list) or not all(
        isinstance(turn, dict) and isinstance(turn.get("value"), str) for turn in turns
    ):
        raise SampleError('`conversations` is not a list of {"from": …, "value": text} turns')
    if problem := turn_order_problem([turn.get("from") for turn in turns]):
        raise SampleError(problem)
    if not isinstance(record.get("id"), str):
        raise SampleError("`id` is not a text")
    sizes = record.get("image_sizes")
    if not isinstance(sizes, list) or not all(_is_size(size) for size in sizes):
        raise SampleError("`image_sizes` is not a list of [width, height] pairs")
    if not isinstance(record.get("meta"), dict):
        raise SampleError("`meta` is not an object")
    conversations = [Turn(turn["from"], turn["value"]) for turn in turns]
    return ShardSample(record["source"], record["id"], images, sizes, conversations, record["meta"])


def _is_size(size: Any) -> bool:
    return (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(side, int) and not isinstance(side, bool) for side in size)
    )
