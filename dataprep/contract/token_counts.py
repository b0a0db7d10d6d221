"""Per-sample token counts of a shard: the sidecar `<name>.tokens.json` beside `<name>.tar`, written
when the recipe names a tokenizer. Keyed by sample key; the shard's own bytes do not depend on it.

A count is every turn's text with the tokenizer (no special tokens, `<image>` removed) plus
`image_tokens` per image: the text part is `count - image_tokens × images`, so a reader that
expands images into another number of tokens needs no tokenizer."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from dataprep.files import canonical_json, write_atomic

SIDECAR_SUFFIX = ".tokens.json"


class TokenSidecar(BaseModel):
    """A shard's token counts: the tokenizer's sha256, tokens per image, and `tokens` per sample key
    in the shard's order."""

    model_config = ConfigDict(extra="forbid")

    tokenizer_sha256: str
    image_tokens: int
    tokens: dict[str, int]


def token_sidecar_path(shard: Path) -> Path:
    """The token sidecar of `<name>.tar`: `<name>.tokens.json`."""
    return shard.with_name(shard.name.removesuffix(".tar") + SIDECAR_SUFFIX)


def write_token_sidecar(shard: Path, sidecar: TokenSidecar) -> Path:
    """Write the shard's token sidecar (canonical JSON, atomically); return its path."""
    path = token_sidecar_path(shard)
    write_atomic(path, canonical_json(sidecar.model_dump()))
    return path


def read_token_sidecar(path: Path) -> TokenSidecar:
    """A token sidecar; ValueError naming the file when it is not one."""
    try:
        return TokenSidecar.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise ValueError(f"{path} is not a token sidecar ({error.errors()[0]['msg']})") from None
