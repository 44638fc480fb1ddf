"""aggregator_state: watermarks, the cache generation, run records; and the writer lock."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection, Engine

from dashboard_metrics.core.schema import aggregator_state
from dashboard_metrics.core.upsert import upsert_rows

# Any constant works; it only has to be the same for every process writing these rollups.
WRITE_LOCK_KEY = 0x64617368  # "dash"
LEADER_LOCK_KEY = 0x6C656164  # "lead"

GENERATION = "generation"
LAST_TICK = "last_tick"
LAST_RECONCILE = "last_reconcile"
TICKS_TOTAL = "ticks_total"
TICK_FAILURES_TOTAL = "tick_failures_total"
# The keys retention keeps (RETENTION in core/coverage.py).
HOURLY_UNTRUSTED = "hourly_untrusted_days"
HOURLY_DELETED_BEFORE = "hourly_deleted_before"
DAILY_DELETED_BEFORE = "daily_deleted_before"
# Pushed events: deleted before this time by their retention; the last tick's view of them
# (PostgreSQL: its snapshot; SQLite: the last sequence number seen); when retention last ran.
EVENTS_DELETED_BEFORE = "events_deleted_before"
EVENTS_SNAPSHOT = "events_snapshot"
EVENTS_SEQ = "events_seq"
LAST_EVENTS_CLEANUP = "last_cleanup:events"


# Event time ranges the next tick recomputes (request_recompute). A list of [start, end) ISO pairs.
RECOMPUTE_REQUESTS = "recompute_requests"


# The source snapshot's clock at the last tick: the next one reads changes from it, less the
# overlap (changes.py).
WATERMARK = "watermark"
_PER_TABLE_WATERMARK = "watermark:"  # before 0.3: the newest change seen per source table


def previous_watermark(stored: dict[str, Any]) -> datetime | None:
    if stored.get(WATERMARK) is not None:
        return datetime.fromisoformat(stored[WATERMARK])
    older = [v for k, v in stored.items() if k.startswith(_PER_TABLE_WATERMARK) and v]
    return min(map(datetime.fromisoformat, older), default=None)


def fingerprint_key(scan: str) -> str:
    return f"fingerprint:{scan}"


def take_write_lock(conn: Connection) -> None:
    """Serialize writers for the rest of this transaction.

    PostgreSQL: a transaction-scoped advisory lock (released at commit or rollback, also when a
    killed process's connection drops). SQLite: the transaction began with BEGIN IMMEDIATE.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})


def get(conn: Connection, key: str) -> Any:
    row = conn.execute(
        select(aggregator_state.c.value).where(aggregator_state.c.key == key)
    ).scalar_one_or_none()
    return None if row is None else json.loads(row)


def get_all(conn: Connection, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The stored values (of ``keys`` only, when given)."""
    query = select(aggregator_state.c.key, aggregator_state.c.value)
    if keys is not None:
        query = query.where(aggregator_state.c.key.in_(list(keys)))
    return {key: json.loads(value) for key, value in conn.execute(query)}


def put(conn: Connection, values: dict[str, Any], now: datetime) -> None:
    rows = [
        {"key": key, "value": json.dumps(value, default=str), "updated_at": now}
        for key, value in values.items()
    ]
    upsert_rows(conn, aggregator_state, rows, ["key"], ["value", "updated_at"])


def generation(conn: Connection) -> int:
    return generation_in({GENERATION: get(conn, GENERATION)})


def generation_in(values: Mapping[str, Any]) -> int:
    """The cache generation in values read with ``get_all``."""
    return int(values.get(GENERATION) or 0)


def request_recompute(rollup: Engine, start: datetime, end: datetime, now: datetime) -> bool:
    """Ask the next tick to recompute the events in [start, end) from the source and rebuild
    their days and months: source rows were written without a current ``modified_at``
    (generated data), or a backfill skipped a tier. Returns False when the rollup schema does
    not exist yet (no aggregator has run: nothing to tell)."""
    with rollup.connect() as conn:
        if not inspect(conn).has_table(aggregator_state.name, schema=aggregator_state.schema):
            return False
    with rollup.begin() as conn:
        take_write_lock(conn)  # a tick cannot consume the list between this read and write
        requests = get(conn, RECOMPUTE_REQUESTS) or []
        requests.append([start.isoformat(), end.isoformat()])
        put(conn, {RECOMPUTE_REQUESTS: requests}, now)
    return True
