"""The InternVL "Hermes-2" (ChatML) template: rendering, tokenization and label masks.

Pure functions over a (fast) tokenizer. The whole rendered conversation is tokenized at once, as the
official trainer does, and a token is a target when any of its characters lies in an assistant reply or
its `<|im_end|>` (character offsets, so the mask cannot drift from the ids, and a token that a
tokenizer merges across the `assistant\n` boundary still trains the reply; the official code re-derives
the mask per turn and zeroes the whole sample on a mismatch).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dataprep.contract.sample import IMAGE_PLACEHOLDER

IGNORE_INDEX = -100
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
SPECIAL_TOKENS = (
    IM_START,
    IM_END,
    IMG_START,
    IMG_END,
    IMG_CONTEXT,
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
)
DEFAULT_SYSTEM = "Answer the questions."
ROLES = {"human": f"{IM_START}user\n", "gpt": f"{IM_START}assistant\n"}
Overlong = Literal["truncate", "drop"]


def image_tokens_per_image(image_size: int, patch_size: int, downsample_ratio: float) -> int:
    """N = (image_size / patch)² × downsample_ratio²: 256 for 448 / 14 / 0.5."""
    return int((image_size // patch_size) ** 2 * downsample_ratio**2)


def expand_images(text: str, num_image_tokens: int) -> str:
    """Replace each `<image>` with `<img>` + `<IMG_CONTEXT>` × N + `</img>`."""
    return text.replace(IMAGE_PLACEHOLDER, IMG_START + IMG_CONTEXT * num_image_tokens + IMG_END)


def segments(
    conversations: Sequence[dict[str, str]], system: str, num_image_tokens: int
) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, is_target) pieces; targets are replies + `<|im_end|>`.
    As the official MPT-style template, an empty turn renders as its role header alone."""
    pieces = [(f"{IM_START}system\n{system}{IM_END}", False)]
    for turn in conversations:
        if turn["from"] not in ROLES:
            raise ValueError(f"unknown role {turn['from']!r}")
        pieces.append((ROLES[turn["from"]], False))
        if value := expand_images(turn["value"], num_image_tokens):
            pieces.append((f"{value}{IM_END}", turn["from"] == "gpt"))
    return pieces


def render(
    conversations: Sequence[dict[str, str]], system: str = DEFAULT_SYSTEM, num_image_tokens: int = 0
) -> str:
    """The full prompt text exactly as the reference renders it."""
    return "".join(text for text, _ in segments(conversations, system, num_image_tokens))


@dataclass(frozen=True)
class Encoded:
    """Token ids and labels of one sample, or why it was dropped."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    dropped: str = ""


def encode(
    tokenizer: Any,
    conversations: Sequence[dict[str, str]],
    *,
    num_image_tokens: int,
    max_length: int,
    system: str = DEFAULT_SYSTEM,
    overlong: Overlong = "truncate",
) -> Encoded:
    """Tokenize with labels masked to -100 outside assistant replies.

    Too-long samples are truncated only in text after the last image (and only if some target
    token survives) when `overlong="truncate"`, otherwise dropped; never silently zeroed.
    """
    pieces = segments(conversations, system, num_image_tokens)
    span_starts, span_ends, position = [], [], 0
    for text, target in pieces:
        if target:
            span_starts.append(position)
            span_ends.append(position + len(text))
        position += len(text)
    encoding = tokenizer(
        "".join(text for text, _ in pieces), add_special_tokens=False, return_offsets_mapping=True
    )
    input_ids = list(encoding["input_ids"])
    labels = []
    for token, (start, end) in zip(input_ids, encoding["offset_mapping"], strict=True):
        span = bisect.bisect_right(span_starts, max(start, end - 1)) - 1
        labels.append(token if span >= 0 and start < span_ends[span] else IGNORE_INDEX)
    if all(label == IGNORE_INDEX for label in labels):
        return Encoded([], [], dropped="no target (empty replies)")
    if len(input_ids) <= max_length:
        return Encoded(input_ids, labels)
    if overlong == "drop":
        return Encoded([], [], dropped="too long")
    img_end = tokenizer.convert_tokens_to_ids(IMG_END)
    last_image_end = max((i for i, t in enumerate(input_ids) if t == img_end), default=-1)
    if last_image_end >= max_length:
        return Encoded([], [], dropped="images exceed max length")
    labels = labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        return Encoded([], [], dropped="no target left after truncation")
    return Encoded(input_ids[:max_length], labels, truncated=True)
