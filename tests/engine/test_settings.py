"""Build settings."""

from __future__ import annotations

from pathlib import Path

from dataprep.engine.settings import BuildSettings


def test_a_relative_output_folder_is_made_absolute_for_workers_that_run_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert BuildSettings(out=Path("out/demo")).out == tmp_path / "out" / "demo"
