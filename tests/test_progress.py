"""Live progress: drawn in place on a terminal, silent when not a TTY."""

from __future__ import annotations

import io

from dataprep.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_stage_rate_and_eta_on_a_terminal():
    stream = FakeTerminal()
    progress = Progress("normalize", 4, stream=stream)
    progress.advance(records=100)
    progress.advance(records=50)
    progress.close()
    last = stream.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("[normalize] 2/4  150 records")
    assert "/s" in last and "ETA 00:" in last


def test_progress_is_silent_when_not_a_terminal():
    stream = io.StringIO()
    progress = Progress("write", 2, stream=stream)
    progress.advance(records=10)
    progress.close()
    assert stream.getvalue() == ""


def test_a_stage_with_nothing_to_do_draws_nothing():
    stream = FakeTerminal()
    Progress("fetch", 0, stream=stream).close()
    assert stream.getvalue() == ""
