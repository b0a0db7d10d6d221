"""The Ray session: SIGTERM stops a build as Ctrl-C does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _interrupted_session(tmp_path: Path, before: str, inside: str) -> subprocess.CompletedProcess[bytes]:
    """Run `before`, then a Ray session with `inside` in it, in a fresh process that exits 3 when
    the session ends in KeyboardInterrupt."""
    script = (
        "import os, signal, sys, threading, time\n"
        "from pathlib import Path\n"
        "from dataprep.engine.session import ray_session\n"
        "from dataprep.engine.settings import BuildSettings\n"
        f"{before}"
        "try:\n"
        f"    with ray_session(BuildSettings(out=Path({str(tmp_path)!r}), workers=1)):\n"
        f"{inside}"
        "        time.sleep(30)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)


def test_sigterm_stops_a_build_as_ctrl_c_does(tmp_path):
    done = _interrupted_session(tmp_path, "", "        os.kill(os.getpid(), signal.SIGTERM)\n")
    assert done.returncode == 3, done.stderr.decode()[-2000:]


def test_sigterm_while_ray_starts_stops_a_build_as_ctrl_c_does(tmp_path):
    """Ray's `init` installs its own SIGTERM handler (exit 15, silently) for as long as it runs."""
    before = (
        "def term_once_ray_handles_it():\n"
        "    while 'sigterm_handler' not in getattr(signal.getsignal(signal.SIGTERM), '__qualname__', ''):\n"
        "        time.sleep(0.001)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "threading.Thread(target=term_once_ray_handles_it, daemon=True).start()\n"
    )
    done = _interrupted_session(tmp_path, before, "")
    assert done.returncode == 3, done.stderr.decode()[-2000:]
