"""Run statistics of the aggregator kept in aggregator_state for the service's own metrics.

One state key holds a cumulative histogram of tick durations and the rows written per tier;
every replica of the service reads the same numbers from it.
"""

from __future__ import annotations

import bisect
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from dashboard_metrics.core import state
from dashboard_metrics.core.schema import TIERS

RUNSTATS = "runstats"
# Upper bounds (seconds) of the tick duration histogram.
TICK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def empty() -> dict[str, Any]:
    return {
        "tick_duration": {
            "le": list(TICK_BUCKETS),
            "buckets": [0] * (len(TICK_BUCKETS) + 1),  # per bucket; the last is +Inf
            "sum": 0.0,
            "count": 0,
        },
        "rows_written": dict.fromkeys(TIERS, 0),
    }


def load(raw: Any) -> dict[str, Any]:
    """The stored statistics, or empty ones when absent or written with other bucket bounds
    (a changed layout restarts the histogram: Prometheus sees a counter reset)."""
    stats = empty()
    if not isinstance(raw, dict):
        return stats
    duration = raw.get("tick_duration")
    if isinstance(duration, dict) and duration.get("le") == list(TICK_BUCKETS):
        stats["tick_duration"] = duration
    written = raw.get("rows_written")
    if isinstance(written, dict):
        stats["rows_written"].update({k: int(v) for k, v in written.items() if k in TIERS})
    return stats


def record_tick(conn: Connection, tick: dict[str, Any], now: datetime) -> None:
    """Called inside the tick's transaction with TickResult.as_dict()."""
    stats = load(state.get(conn, RUNSTATS))
    seconds = float(tick.get("duration_seconds") or 0.0)
    duration = stats["tick_duration"]
    duration["buckets"][bisect.bisect_left(TICK_BUCKETS, seconds)] += 1
    duration["sum"] += seconds
    duration["count"] += 1
    for tier, rows in (tick.get("rows_written") or {}).items():
        if tier in TIERS:
            stats["rows_written"][tier] += int(rows)
    state.put(conn, {RUNSTATS: stats}, now)
