"""Progress of a stage: one line redrawn in place on a terminal; plain log lines at a steady interval
elsewhere (a Ray job's log, Slurm, CI), then a summary line; nothing when turned off (`--quiet`)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

LOG_INTERVAL = 30.0  # seconds between plain log lines when not on a terminal

Measure = Callable[[], tuple[int, int | None]]
"""Bytes a stage has moved so far and, when known, all it will move (downloads)."""


class Progress:
    """Stage, units done, records/s (or bytes and bytes/s, given a `measure`) and ETA.

    `enabled`: True draws on the stream as on a terminal, False draws nothing, None (the default)
    draws in place on a terminal and logs a plain line every `interval` seconds elsewhere."""

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
        self.bytes_at_start = measure()[0] if measure and self.mode != "off" else 0
        if self.mode == "live":
            self._draw()

    def advance(self, records: int = 0) -> None:
        """One unit finished, accounting for `records`."""
        self.done += 1
        self.records += records
        self.tick()

    def tick(self) -> None:
        """Redraw (on a terminal) or log a line when the interval has passed (elsewhere)."""
        if self.mode == "live":
            self._draw()
        elif self.mode == "log" and time.monotonic() - self.logged >= self.interval:
            self.logged = time.monotonic()
            self._write(self.line() + "\n")

    def close(self) -> None:
        """End the live line, or log the stage's summary."""
        if self.mode == "live":
            self._write("\n")
        elif self.mode == "log":
            elapsed = time.monotonic() - self.started
            self._write(f"{self.line()}  done in {elapsed:,.0f} s\n")

    def line(self) -> str:
        """`[stage] done/total units  <records or bytes>  <rate>  ETA mm:ss`."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        if self.measure is None:
            amount, rate = f"{self.records:,} records", f"{self.records / elapsed:,.0f}/s"
            eta = elapsed / self.done * (self.total - self.done) if self.done else math.nan
        else:
            moved, whole = self.measure()
            speed = (moved - self.bytes_at_start) / elapsed
            amount = human_bytes(moved) + (f" of {human_bytes(whole)}" if whole else "")
            rate = f"{human_bytes(speed)}/s"
            eta = (whole - moved) / speed if whole and speed > 0 else math.nan
        eta_text = "--:--" if math.isnan(eta) else f"{int(eta // 60):02d}:{int(eta % 60):02d}"
        return f"[{self.stage}] {self.done}/{self.total} units  {amount}  {rate}  ETA {eta_text}"

    def _draw(self) -> None:
        self._write("\r" + self.line() + "   ")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def human_bytes(count: float) -> str:
    """`1.2 GB`-style sizes (powers of 1000, as publishers state them)."""
    units = ("B", "KB", "MB", "GB", "TB")
    power = 0
    while abs(count) >= 1000 and power < len(units) - 1:
        count /= 1000
        power += 1
    return f"{count:,.0f} B" if power == 0 else f"{count:,.1f} {units[power]}"
