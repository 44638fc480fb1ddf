"""All-time totals per (organization, metric), maintained by the writer after each change so
that /metrics never aggregates history on a scrape.

Stub: the /metrics work fills this in (high-water marks, corrections).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Connection


def refresh_totals(conn: Connection, now: datetime) -> None:
    """Called inside every writing transaction (tick, backfill, cleanup) after its writes."""
    return None
