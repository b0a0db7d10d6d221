"""Progress: drawn in place on a terminal, plain log lines elsewhere, nothing when turned off."""

from __future__ import annotations

import io

import pytest

from dataprep import progress as progress_module
from dataprep.progress import Progress, human_bytes


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
    assert last.startswith("[normalize] 2/4 units  150 records")
    assert "/s" in last and "ETA 00:" in last


def test_off_a_terminal_progress_is_plain_lines_at_the_interval_and_a_summary(monkeypatch):
    stream = io.StringIO()
    progress = Progress("write", 3, stream=stream, interval=3600)
    progress.advance(records=10)
    assert stream.getvalue() == ""  # not yet due
    monkeypatch.setattr(progress_module, "LOG_INTERVAL", 0.0)
    due = Progress("write", 3, stream=stream)
    due.advance(records=10)
    due.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 2
    assert lines[0].startswith("[write] 1/3 units  10 records") and "ETA" in lines[0]
    assert lines[1].startswith("[write] 1/3 units  10 records") and lines[1].endswith(" s")
    assert "done in" in lines[1]


def test_turned_off_or_with_nothing_to_do_it_draws_nothing():
    for stream, progress in [(FakeTerminal(), None), (io.StringIO(), False)]:
        Progress("fetch", 0, stream=stream, enabled=progress).close()
        quiet = Progress("fetch", 2, stream=stream, enabled=False)
        quiet.advance(1)
        quiet.close()
        assert stream.getvalue() == ""


def test_with_a_measure_the_line_counts_bytes_of_the_whole_and_their_rate():
    moved = [0]
    stream = FakeTerminal()
    progress = Progress("fetch", 2, stream=stream, measure=lambda: (moved[0], 4_000_000))
    moved[0] = 1_500_000
    progress.advance()
    line = stream.getvalue().split("\r")[-1]
    assert line.startswith("[fetch] 1/2 units  1.5 MB of 4.0 MB  ") and "B/s  ETA " in line
    assert "--:--" not in line  # bytes moved and a known whole: an ETA


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (999, "999 B"), (1_000, "1.0 KB"), (18e9, "18.0 GB"), (3e15, "3,000.0 TB")],
)
def test_human_bytes(count, text):
    assert human_bytes(count) == text
