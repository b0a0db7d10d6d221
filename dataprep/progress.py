"""A one-line live progress display on terminals; silent elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Stage, units done, records/s and ETA, redrawn in place on a TTY."""

    def __init__(
        self, stage: str, total: int, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.stage = stage
        self.total = total
        self.done = 0
        self.records = 0
        self.stream = stream or sys.stderr
        self.enabled = (self.stream.isatty() if enabled is None else enabled) and total > 0
        self.started = time.monotonic()
        self._draw()

    def advance(self, records: int = 0) -> None:
        self.done += 1
        self.records += records
        self._draw()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.records / elapsed
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        eta_text = "--:--" if eta != eta else f"{int(eta // 60):02d}:{int(eta % 60):02d}"
        self.stream.write(
            f"\r[{self.stage}] {self.done}/{self.total}  {self.records} records  {rate:,.0f}/s  ETA {eta_text}   "
        )
        self.stream.flush()
