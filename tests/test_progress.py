"""Progress: a tqdm bar on a terminal only; elsewhere (stderr is the JSON log stream) no bar
frames, only occasional structured log lines."""

from __future__ import annotations

import io
import json

import pytest

from dashboard_metrics.aggregator import progress
from tests.service_support import json_logs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_means_log_lines_and_no_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    with json_logs() as logs:
        bar = progress.ProgressBar(3, "backfill", stream=stream)
        for day in ("2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"):
            bar(1, day)
        bar.close()
    assert stream.getvalue() == ""  # nothing but log lines on a non-terminal
    assert "\r" not in logs.getvalue()
    records = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert [(r["event"], r["done"]) for r in records] == [
        ("progress", 1),
        ("progress", 2),
        ("progress done", 3),
    ]
    assert records[0]["task"] == "backfill" and records[0]["total"] == 3
    assert records[0]["at"] == "2026-01-01"
    assert bar.done == bar.total == 3


def test_log_lines_are_occasional() -> None:
    with json_logs() as logs:
        bar = progress.ProgressBar(1000, "generate", stream=io.StringIO())
        for _ in range(999):
            bar(1, "")
    assert logs.getvalue() == ""  # well under LOG_EVERY seconds: not one line yet
    with json_logs() as logs:
        bar(1, "")
    assert json.loads(logs.getvalue())["event"] == "progress done"


def test_a_terminal_gets_a_bar_that_ends_its_line() -> None:
    stream = Terminal()
    with json_logs() as logs:
        bar = progress.ProgressBar(4, "generate", stream=stream)
        bar(2, "2026-01-02")
        bar.close()  # stopped early: the line still ends
        bar.close()
    assert logs.getvalue() == ""
    out = stream.getvalue()
    assert out.startswith("\rgenerate") and out.endswith("\n")
    assert "2/4" in out and "2026-01-02" in out
