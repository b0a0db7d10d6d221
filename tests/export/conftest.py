"""Shared set-up of the export tests: one real build per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.export_build import Original, build_export_mixture, read_originals


@pytest.fixture(scope="module")
def mixture(tmp_path_factory) -> tuple[Path, Path, list[Original]]:
    """(manifest path, tokenizer.json, the samples as the shards hold them)."""
    manifest_path, tokenizer = build_export_mixture(tmp_path_factory.mktemp("mixture"))
    return manifest_path, tokenizer, read_originals(manifest_path)
