"""The one in-memory record every stage shares: a conversation with its images, or a reject."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

IMAGE_PLACEHOLDER = "<image>"

Role = Literal["human", "gpt"]


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: Role
    value: str

    def to_json(self) -> dict[str, str]:
        return {"from": self.role, "value": self.value}


@dataclass(frozen=True)
class ImageFile:
    """An image stored as a file, named relative to a root it must not escape."""

    root: Path
    relpath: str


@dataclass(frozen=True)
class ImageBytes:
    """An image whose encoded bytes the source already holds (parquet cells, pickled arrays)."""

    data: bytes
    name: str = ""


ImageInput = ImageFile | ImageBytes


@dataclass
class Sample:
    """A normalized conversation: turns alternate human/gpt starting with human, one
    `<image>` placeholder per image in human turns."""

    id: str
    conversations: list[Turn]
    images: list[ImageInput] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    """A raw record that cannot become a sample, with a machine-readable reason code."""

    id: str
    reason: str
    detail: str = ""


Record = Sample | Reject


def turn_order_problem(roles: list[str]) -> str | None:
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


def conversation_problem(sample: Sample) -> str | None:
    """Why a sample's conversation breaks the shard contract, or None when it is well formed."""
    turns = sample.conversations
    problem = turn_order_problem([turn.role for turn in turns])
    if problem:
        return problem
    if any(IMAGE_PLACEHOLDER in turn.value for turn in turns if turn.role == "gpt"):
        return "<image> placeholder in a gpt turn"
    placeholders = sum(turn.value.count(IMAGE_PLACEHOLDER) for turn in turns if turn.role == "human")
    if placeholders != len(sample.images):
        return f"{placeholders} <image> placeholders for {len(sample.images)} images"
    return None
