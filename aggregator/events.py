"""The pushed events a tick has not seen yet, and their retention.

A tick recomputes every hour that got partials (core/eventstore.py: an ingest transaction's sums
per hour, metric and labels) since the last tick: the hour is then a fresh sum of all its
partials (core/eventsql.py), so a partial seen twice is still counted once. What matters is never
to miss one, and ingest transactions commit in any order:

- PostgreSQL: each partial carries its inserting transaction's id (``commit_xid``). A tick stores
  its snapshot; the next one takes the partials visible in its own snapshot and not in the
  stored one. A transaction that began early and committed late was in progress in the stored
  snapshot, so it is found however old its id.
- SQLite: writers take turns (one write transaction at a time, and the tick holds the write
  lock), so the AUTOINCREMENT sequence follows commit order: the partials after the last seen.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, text
from sqlalchemy.engine import Connection

from dashboard_metrics.core import state
from dashboard_metrics.core.schema import Granularity, pushed_event_partials, pushed_events
from dashboard_metrics.core.sourcesql import parse_bucket
from dashboard_metrics.core.timeutil import as_utc

log = logging.getLogger("dashboard_metrics.aggregator")

_EVENT_HOURS_PG = """
SELECT DISTINCT hour
FROM pushed_event_partials
WHERE pg_visible_in_snapshot(commit_xid, CAST(:now AS pg_snapshot))
  {since}
"""
_SINCE_PG = """AND commit_xid >= pg_snapshot_xmin(CAST(:last AS pg_snapshot))
  AND NOT pg_visible_in_snapshot(commit_xid, CAST(:last AS pg_snapshot))"""


def new_event_hours(
    conn: Connection, stored: dict[str, Any]
) -> tuple[set[datetime], dict[str, Any]]:
    """The hours of the partials committed since the last tick, and the state that records
    this tick's view (``conn`` holds the write lock)."""
    if conn.dialect.name == "postgresql":
        return _postgresql(conn, stored.get(state.EVENTS_SNAPSHOT))
    return _sqlite(conn, stored.get(state.EVENTS_SEQ))


def _hours(rows: Any) -> set[datetime]:
    return {as_utc(parse_bucket(row[0], Granularity.HOUR)) for row in rows}  # type: ignore[arg-type]


def _postgresql(conn: Connection, last: str | None) -> tuple[set[datetime], dict[str, Any]]:
    now = conn.exec_driver_sql("SELECT CAST(pg_current_snapshot() AS text)").scalar_one()
    query = _EVENT_HOURS_PG.format(since=_SINCE_PG if last else "")
    hours = _hours(conn.execute(text(query), {"now": now, "last": last}))
    return hours, {state.EVENTS_SNAPSHOT: now}


def _sqlite(conn: Connection, last: int | None) -> tuple[set[datetime], dict[str, Any]]:
    seen = int(last or 0)
    newest = conn.exec_driver_sql("SELECT max(seq) FROM pushed_event_partials").scalar()
    if newest is None or int(newest) <= seen:
        return set(), {}
    query = (
        pushed_event_partials.select()
        .with_only_columns(pushed_event_partials.c.hour)
        .where(
            text("seq > :seen").bindparams(seen=seen),
            text("seq <= :newest").bindparams(newest=int(newest)),
        )
        .distinct()
    )
    return _hours(conn.execute(query)), {state.EVENTS_SEQ: int(newest)}


def cleanup(conn: Connection, stored: dict[str, Any], cutoff: datetime, now: datetime) -> int:
    """Delete the events older than ``cutoff``; record the floor (never lowered)."""
    deleted = conn.execute(
        delete(pushed_events).where(pushed_events.c.event_time < cutoff)
    ).rowcount
    floor = stored.get(state.EVENTS_DELETED_BEFORE)
    if floor is not None:
        cutoff = max(cutoff, datetime.fromisoformat(floor))
    state.put(
        conn,
        {
            state.EVENTS_DELETED_BEFORE: cutoff.isoformat(),
            state.LAST_EVENTS_CLEANUP: now.isoformat(),
        },
        now,
    )
    log.info(
        "cleanup",
        extra={"fields": {"tier": "events", "deleted": deleted, "cutoff": cutoff.isoformat()}},
    )
    return int(deleted or 0)
