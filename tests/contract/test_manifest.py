"""Reading manifests: what is refused, and how it is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataprep.contract.manifest import FORMAT_VERSION, ManifestError, load_manifest


def test_a_manifest_of_a_newer_format_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format_version": FORMAT_VERSION + 1, "a_field_from_the_future": 1}))
    with pytest.raises(
        ManifestError, match=rf"manifest format {FORMAT_VERSION + 1} is newer .* upgrade dataprep"
    ):
        load_manifest(path)


@pytest.mark.parametrize(
    "text", ['{"format_version": 1}', "[1, 2]", "not json", "[" * 100_000 + "]" * 100_000]
)
def test_other_files_are_not_dataprep_manifests(tmp_path: Path, text: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(text)
    with pytest.raises(ManifestError, match="is not a dataprep manifest"):
        load_manifest(path)
