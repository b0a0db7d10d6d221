"""Token counts of mixture samples with the recipe's tokenizer (a Hugging Face `tokenizer.json`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from dataprep.contract.sample import IMAGE_PLACEHOLDER

TOKENIZER_FILE = "tokenizer.json"


def tokenizer_file(path: Path) -> Path:
    """A `tokenizer.json` given directly or as the folder (a model checkout) that holds it."""
    return path / TOKENIZER_FILE if path.is_dir() else path


@dataclass(frozen=True)
class TokenSettings:
    """What a shard writer needs to count tokens; `key` changes whenever the counts would."""

    file: str
    sha256: str
    image_tokens: int

    @property
    def key(self) -> str:
        return f"{self.sha256}:{self.image_tokens}"


class TokenCounter:
    """Tokens of a sample: every turn's text (no special tokens, `<image>` removed) plus
    `image_tokens` per image. The chat template's own tokens are not counted."""

    def __init__(self, settings: TokenSettings) -> None:
        self._tokenizer = Tokenizer.from_file(settings.file)
        self._image_tokens = settings.image_tokens

    def count_all(self, documents: list[dict[str, Any]]) -> list[int]:
        """Counts of many samples, tokenized in one batch (much faster than one call each)."""
        texts = [
            turn["value"].replace(IMAGE_PLACEHOLDER, "")
            for document in documents
            for turn in document["conversations"]
        ]
        lengths = iter(
            len(encoding.ids) for encoding in self._tokenizer.encode_batch(texts, add_special_tokens=False)
        )
        return [
            sum(next(lengths) for _ in document["conversations"])
            + self._image_tokens * len(document["images"])
            for document in documents
        ]
