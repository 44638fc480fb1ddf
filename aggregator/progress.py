"""Progress of long work (backfill, test-data generation).

On a terminal: a tqdm bar on stderr. Anywhere else (compose, Kubernetes, a pipe, a test), where
stderr is the JSON log stream, no bar frames at all: an occasional structured log line
(`progress`, at most one per LOG_EVERY seconds) and one when the work is done.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm

log = logging.getLogger("dashboard_metrics.progress")

# What long work reports to: units done so far and a label (a ProgressBar is one).
Progress = Callable[[int, str], None]

LOG_EVERY = 30.0  # seconds between progress log lines when stderr is not a terminal


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class ProgressBar:
    """Callable as ``progress(steps, note)``, the shape backfill and the generator report in."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.done = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._closed = False
        stream = stream or sys.stderr
        self._bar: tqdm[Any] | None = None
        if _is_terminal(stream):
            self._bar = tqdm(
                total=self.total,
                desc=label,
                file=stream,
                mininterval=0.2,
                dynamic_ncols=True,
                bar_format="{desc} {bar:30} {n_fmt}/{total_fmt} {elapsed}{postfix}",
            )

    def advance(self, steps: int = 1, note: str = "") -> None:
        if self.done >= self.total:
            return
        steps = min(steps, self.total - self.done)
        self.done += steps
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note[:24], refresh=False)
            self._bar.update(steps)
        else:
            now = time.monotonic()
            if self.done < self.total and now - self._last_log >= LOG_EVERY:
                self._last_log = now
                self._log("progress", note)
        if self.done == self.total:
            self.close()

    def _log(self, event: str, note: str) -> None:
        fields = {
            "task": self.label,
            "done": self.done,
            "total": self.total,
            "elapsed_seconds": round(time.monotonic() - self.started, 1),
        }
        if note:
            fields["at"] = note
        log.info(event, extra={"fields": fields})

    def close(self) -> None:
        """End the bar's line, also when the work stops early (a no-op once closed)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.done == self.total:
            self._log("progress done", "")

    def __call__(self, steps: int, note: str) -> None:
        self.advance(steps, note)
