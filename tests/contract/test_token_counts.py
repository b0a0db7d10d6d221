"""The token sidecar beside a shard: written canonical, read back, and refused when it is not one."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataprep.contract.token_counts import (
    TokenSidecar,
    read_token_sidecar,
    token_sidecar_path,
    write_token_sidecar,
)


def test_a_sidecar_lies_beside_its_shard_and_reads_back_as_written(tmp_path: Path) -> None:
    shard = tmp_path / "mix-000001.tar"
    sidecar = TokenSidecar(tokenizer_sha256="ab" * 32, image_tokens=256, tokens={"000001_000000": 300})
    path = write_token_sidecar(shard, sidecar)
    assert path == token_sidecar_path(shard) == tmp_path / "mix-000001.tokens.json"
    assert read_token_sidecar(path) == sidecar
    assert path.read_bytes().startswith(b'{"image_tokens":256,')  # canonical: sorted keys, no spaces


@pytest.mark.parametrize(
    "text", ["{}", '{"tokenizer_sha256": "x", "image_tokens": 1, "tokens": {"a": "many"}}']
)
def test_a_file_that_is_not_a_sidecar_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "mix-000000.tokens.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{path} is not a token sidecar"):
        read_token_sidecar(path)
