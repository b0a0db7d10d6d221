"""Names from records resolve only to files inside their root."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataprep.paths import UnsafePath, resolve_inside


def test_a_name_with_a_lone_surrogate_is_an_invalid_path(tmp_path: Path) -> None:
    with pytest.raises(UnsafePath, match="not encodable"):
        resolve_inside(tmp_path, "images/\ud800.jpg")
    # an undecodable byte of a real file name (surrogateescape) is a name like any other
    assert resolve_inside(tmp_path, "\udc80.jpg") == Path(f"{tmp_path}/\udc80.jpg")
