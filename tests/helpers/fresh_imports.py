"""Which libraries some code imports, run in a fresh interpreter: a build of local sources (or of
downloads already done) needs none of the HTTP, hub and report libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

UNUSED_BY_LOCAL_BUILDS = ("requests", "gdown", "huggingface_hub", "jinja2")
UNUSED_BY_THE_DRIVER = ("pyvips", "pyarrow.compute")
"""Imported only where images are resampled or charts read (workers), not by a build's driver."""
REPO = Path(__file__).resolve().parent.parent.parent


def imported_by(code: str, names: tuple[str, ...] = UNUSED_BY_LOCAL_BUILDS) -> list[str]:
    """Those of `names` in `sys.modules` once `code` has run in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint([name for name in {names!r} if name in sys.modules])\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return ast.literal_eval(done.stdout.splitlines()[-1])
