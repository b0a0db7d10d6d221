"""Build settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataprep.engine.settings import BuildSettings


def test_a_relative_output_folder_is_made_absolute_for_workers_that_run_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert BuildSettings(out=Path("out/demo")).out == tmp_path / "out" / "demo"


def test_an_unknown_executor_or_local_processes_joining_a_cluster_is_refused(tmp_path):
    with pytest.raises(ValueError, match="executor must be one of auto, processes, ray, not 'threads'"):
        BuildSettings(out=tmp_path, executor="threads")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="joins no Ray cluster"):
        BuildSettings(out=tmp_path, executor="processes", ray_address="ray://head:10001")
