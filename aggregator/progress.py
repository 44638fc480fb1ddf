"""A small progress bar on stderr for long work (backfill, test-data generation)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last_draw = 0.0

    def advance(self, steps: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + steps)
        now = time.monotonic()
        if self.done == self.total or now - self._last_draw >= 0.2:
            self._last_draw = now
            self._draw(note)

    def _draw(self, note: str) -> None:
        width = 30
        filled = int(width * self.done / self.total)
        elapsed = time.monotonic() - self.started
        line = (
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total} {elapsed:5.1f}s {note[:24]:<24}"
        )
        self.stream.write(line)
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()

    def __call__(self, steps: int, note: str) -> None:
        self.advance(steps, note)
