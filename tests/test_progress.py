"""Progress: drawn in place on a terminal, plain log lines elsewhere, nothing when turned off."""

from __future__ import annotations

import io
import re

import pytest

from dataprep import progress as progress_module
from dataprep.progress import Progress, human_bytes


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        """What a terminal shows: the control sequences Progress writes (cursor up N lines, clear a
        line, carriage return), carried out."""
        rows, row = [""], 0
        for token in re.split(r"(\x1b\[\d*F|\x1b\[2K|\r|\n)", self.getvalue()):
            if match := re.fullmatch(r"\x1b\[(\d*)F", token):
                row -= int(match.group(1) or 1)
            elif token in ("\x1b[2K", "\r"):
                rows[row] = ""
            elif token == "\n":
                row += 1
                rows += [""] * (row + 1 - len(rows))
            else:
                rows[row] += token
        return rows


def test_progress_redraws_stage_rate_and_eta_on_a_terminal():
    stream = FakeTerminal()
    progress = Progress("normalize", 4, stream=stream)
    progress.advance(records=100)
    progress.advance(records=50)
    progress.close()
    (line, end) = stream.screen()
    assert line.startswith("[normalize] 2/4 units  150 records") and end == ""
    assert "/s" in line and "ETA 00:" in line


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


def test_with_a_measure_lines_count_bytes_of_the_whole_and_of_each_part_still_moving():
    parts = {"coco": (0, 3_000_000), "ai2d": (0, 1_000_000)}
    stream = FakeTerminal()
    progress = Progress("fetch", 2, stream=stream, measure=lambda: dict(parts))
    parts.update(coco=(500_000, 3_000_000), ai2d=(1_000_000, 1_000_000))
    progress.advance()
    head, coco, finished = stream.screen()  # ai2d's line, drawn first, is cleared
    assert finished == "" and head.startswith("[fetch] 1/2 units  1.5 MB of 4.0 MB  ") and "B/s  ETA " in head
    assert "--:--" not in head  # bytes moved and a known whole: an ETA
    assert coco.startswith("  coco  500.0 KB of 3.0 MB  ")  # ai2d is complete: no line of its own
    parts.update(coco=(3_000_000, 3_000_000))
    progress.advance()
    progress.close()
    assert stream.screen()[0].startswith("[fetch] 2/2 units  4.0 MB of 4.0 MB") and stream.screen()[1:] == [
        "",
        "",
        "",
    ]


def test_off_a_terminal_each_part_still_moving_gets_a_line_under_the_stage(monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_INTERVAL", 0.0)
    stream = io.StringIO()
    progress = Progress("fetch", 1, stream=stream, measure=lambda: {"coco": (1_000, None)})
    progress.tick()
    assert stream.getvalue().splitlines() == [
        line for line in stream.getvalue().splitlines() if "\x1b" not in line
    ]
    head, coco = stream.getvalue().splitlines()
    assert head.startswith("[fetch] 0/1 units  1.0 KB  ") and coco.startswith("  coco  1.0 KB  ")
    assert head.endswith("ETA --:--")  # a whole not known: no ETA


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (999, "999 B"), (1_000, "1.0 KB"), (18e9, "18.0 GB"), (3e15, "3,000.0 TB")],
)
def test_human_bytes(count, text):
    assert human_bytes(count) == text
