"""Progress of a stage: lines redrawn in place on a terminal; plain log lines at a steady interval
elsewhere (a Ray job's log, Slurm, CI), then a summary line; nothing when turned off (`--quiet`)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

LOG_INTERVAL = 30.0  # seconds between plain log lines when not on a terminal
VERBOSE_INTERVAL = 5.0  # the same, asked to be verbose

Transfer = tuple[int, int | None]
"""Bytes moved so far and, when known, all that will be moved."""

Measure = Callable[[], dict[str, Transfer]]
"""Bytes a stage has moved, per part (for downloads: per upstream)."""


class Progress:
    """Stage, units done, records/s and ETA; given a `measure`, bytes of the whole, their rate and
    ETA, for the stage and for each part still moving.

    `enabled`: True draws on the stream as on a terminal, False draws nothing, None (the default)
    draws in place on a terminal and logs plain lines every `interval` seconds elsewhere."""

    def __init__(
        self,
        stage: str,
        total: int,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        measure: Measure | None = None,
        interval: float | None = None,
    ) -> None:
        self.stage = stage
        self.total = total
        self.done = 0
        self.records = 0
        self.stream = stream or sys.stderr
        live = self.stream.isatty() if enabled is None else enabled
        self.mode = "off" if total == 0 or enabled is False else ("live" if live else "log")
        self.measure = measure
        self.interval = LOG_INTERVAL if interval is None else interval
        self.started = time.monotonic()
        self.logged = self.started
        self.drawn = 0  # lines the live view takes on the terminal
        self.at_start = measure() if measure and self.mode != "off" else {}
        if self.mode == "live":
            self._draw()

    def advance(self, records: int = 0) -> None:
        """One unit finished, accounting for `records`."""
        self.done += 1
        self.records += records
        self.tick()

    def tick(self) -> None:
        """Redraw (on a terminal) or log the lines when the interval has passed (elsewhere)."""
        if self.mode == "live":
            self._draw()
        elif self.mode == "log" and time.monotonic() - self.logged >= self.interval:
            self.logged = time.monotonic()
            self._write("".join(line + "\n" for line in self.lines()))

    def close(self) -> None:
        """End the live lines, or log the stage's summary."""
        if self.mode == "live":
            self._draw()
            self._write("\n")
        elif self.mode == "log":
            elapsed = time.monotonic() - self.started
            self._write(f"{self.lines()[0]}  done in {elapsed:,.0f} s\n")

    def lines(self) -> list[str]:
        """`[stage] done/total units  <records or bytes>  <rate>  ETA mm:ss`, then one line per part
        still moving bytes."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        if self.measure is None:
            amount, rate = f"{self.records:,} records", f"{self.records / elapsed:,.0f}/s"
            eta = elapsed / self.done * (self.total - self.done) if self.done else math.nan
            return [f"[{self.stage}] {self.done}/{self.total} units  {amount}  {rate}  ETA {_clock(eta)}"]
        parts = self.measure()
        wholes = [whole for _, whole in parts.values()]
        overall = (
            sum(moved for moved, _ in parts.values()),
            None if None in wholes else sum(whole or 0 for whole in wholes),
        )
        start = sum(moved for moved, _ in self.at_start.values())
        head = f"[{self.stage}] {self.done}/{self.total} units  {_bytes_line(overall, start, elapsed)}"
        moving = [
            f"  {name}  {_bytes_line(transfer, self.at_start.get(name, (0, None))[0], elapsed)}"
            for name, transfer in parts.items()
            if transfer[1] is None or transfer[0] < transfer[1]
        ]
        return [head, *moving]

    def _draw(self) -> None:
        """Redraw the view in place: back to its first line, each line cleared and rewritten."""
        lines = self.lines()
        lines += [""] * (self.drawn - len(lines))  # parts that finished leave blank lines, not stale ones
        up = f"\x1b[{self.drawn - 1}F" if self.drawn > 1 else ""
        self._write(up + "\r" + "\n".join(f"\x1b[2K{line}" for line in lines))
        self.drawn = len(lines)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _bytes_line(transfer: Transfer, at_start: int, elapsed: float) -> str:
    """`1.2 GB of 18.0 GB  35.0 MB/s  ETA mm:ss` (the rate of this run: bytes moved since it began)."""
    moved, whole = transfer
    speed = (moved - at_start) / elapsed
    eta = (whole - moved) / speed if whole and speed > 0 else math.nan
    amount = human_bytes(moved) + (f" of {human_bytes(whole)}" if whole else "")
    return f"{amount}  {human_bytes(speed)}/s  ETA {_clock(eta)}"


def _clock(seconds: float) -> str:
    return "--:--" if math.isnan(seconds) else f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def human_bytes(count: float) -> str:
    """`1.2 GB`-style sizes (powers of 1000, as publishers state them)."""
    units = ("B", "KB", "MB", "GB", "TB")
    power = 0
    while abs(count) >= 1000 and power < len(units) - 1:
        count /= 1000
        power += 1
    return f"{count:,.0f} B" if power == 0 else f"{count:,.1f} {units[power]}"
