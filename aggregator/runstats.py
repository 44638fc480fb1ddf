"""Run statistics of the aggregator kept in aggregator_state for the service's own metrics.

Stub: the /metrics work fills this in (tick duration histogram, rows written by tier).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection


def record_tick(conn: Connection, tick: dict[str, Any], now: datetime) -> None:
    """Called inside the tick's transaction with TickResult.as_dict()."""
    return None
