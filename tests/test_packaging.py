"""The data-prep core stands without torch: not in its dependencies, never imported by it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "torchvision", "webdataset")


def test_core_dependencies_leave_torch_to_the_bridge_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert not any(name in core for name in ("torch", "transformers"))
    assert any(spec.startswith("torch") for spec in project["optional-dependencies"]["bridge"])


def test_importing_every_core_module_imports_no_torch():
    code = (
        "import sys, pkgutil, importlib, dataprep\n"
        "for module in pkgutil.walk_packages(dataprep.__path__, 'dataprep.'):\n"
        "    importlib.import_module(module.name)\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"
