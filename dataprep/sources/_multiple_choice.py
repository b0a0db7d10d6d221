"""Pieces shared by the multiple-choice figure sources (AI2D, GeoQA+): the prompt option,
the question/answer turns, and PNG encoding of figures the adapter draws or unpickles."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

from dataprep.contract.sample import IMAGE_OPENING, Turn
from dataprep.sources.base import SourceOptions

MULTIPLE_CHOICE_SUFFIX = "\nAnswer with the option's letter from the given choices directly."


class MultipleChoicePrompt(SourceOptions):
    """How a multiple-choice question is put to the model."""

    suffix: str = MULTIPLE_CHOICE_SUFFIX


def option_letter(index: int) -> str:
    """The letter of a 0-based option index: 0 → "A"."""
    return chr(ord("A") + index)


def option_lines(options: Sequence[str]) -> str:
    """Render multiple-choice options as lines `A. ...`, `B. ...`."""
    return "\n".join(f"{option_letter(index)}. {text}" for index, text in enumerate(options))


def multiple_choice_turns(
    question: str, options: Sequence[str], answer_index: int, prompt: MultipleChoicePrompt
) -> list[Turn]:
    """`<image>`, the question, the options as lines `A. ...`, the suffix; the answer is a letter."""
    human = f"{IMAGE_OPENING}{question}\n{option_lines(options)}{prompt.suffix}"
    return [Turn("human", human), Turn("gpt", option_letter(answer_index))]


def png_bytes(image: Image.Image) -> bytes:
    """Encode a PIL image as PNG (lossless, same pixels give the same bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
