"""Storing a validated batch in `pushed_events`: one INSERT, idempotent by (organization, id),
committed before it returns; the rows actually inserted are counted (the rest were there).

Blocking: call it in a thread (`exporter.dbcall.run_db`). `commit_xid` (PostgreSQL) and `seq`
(SQLite) are never written: their defaults record the commit order the tick folds by.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from dashboard_metrics.core.db import rollup_engine
from dashboard_metrics.core.schema import pushed_events
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.ingest.events import Batch, Window, validate

# One statement per batch (the rollup schema is on the search path of rollup connections). The
# events travel as one JSON array of rows: orjson writes it in well under a millisecond, where
# psycopg's per-element array adaptation costs the GIL-bound service ~17 ms per 1,000 events.
# DO NOTHING: a retried or repeated event keeps its first row.
PG_INSERT = (
    "INSERT INTO pushed_events (organization_id, event_id, metric_name, value, event_time,"
    " model, workflow, deployment, received_at)"
    " SELECT %s, r->>0, r->>1, (r->>2)::float8, (r->>3)::timestamptz, r->>4, r->>5, r->>6, %s"
    " FROM jsonb_array_elements(%s::jsonb) AS r"
    " ON CONFLICT (organization_id, event_id) DO NOTHING"
)
_COLUMNS = ("event_id", "metric_name", "value", "event_time", "model", "workflow", "deployment")


def ingest_engine(settings: Settings) -> Engine:
    """The engine the endpoint writes with, a small pool of its own. On SQLite it is opened
    the readers' way (never creating the file: a service must not leave an empty database
    where the real one was moved away); its one-statement transactions need no early lock."""
    return rollup_engine(settings, writer=False, pool_size=4, max_overflow=4)


def _insert_pg(conn: Connection, org: str, batch: Batch, received_at: datetime) -> int:
    # orjson writes aware datetimes as RFC 3339 and floats exactly (shortest round trip).
    rows = orjson.dumps(batch.rows).decode()
    # The command tag counts the rows inserted, not the ones DO NOTHING skipped.
    return conn.exec_driver_sql(PG_INSERT, (org, received_at, rows)).rowcount


def _insert_sqlite(conn: Connection, org: str, batch: Batch, received_at: datetime) -> int:
    common = {"organization_id": org, "received_at": received_at}
    rows = [{**common, **dict(zip(_COLUMNS, row, strict=True))} for row in batch.rows]
    statement = sqlite_insert(pushed_events).on_conflict_do_nothing(
        index_elements=["organization_id", "event_id"]
    )
    # executemany sums the rows each execution changed: the skipped ones change none.
    return conn.execute(statement, rows).rowcount


def store(engine: Engine, org: str, batch: Batch, received_at: datetime) -> int:
    """Insert ``batch``'s events for ``org`` and commit; the number of rows inserted."""
    if not len(batch):
        return 0
    if engine.dialect.name == "postgresql":
        # One statement, committed on its own (autocommit): no BEGIN/COMMIT round trips.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return _insert_pg(conn, org, batch, received_at)
    with engine.begin() as conn:
        return _insert_sqlite(conn, org, batch, received_at)


@dataclass(frozen=True)
class Outcome:
    accepted: int
    duplicates: int
    rejected: list[dict[str, Any]]


def ingest(
    engine: Engine, settings: Settings, org: str, events: list[Any], now: datetime
) -> Outcome:
    """Validate ``events`` (pushed to ``org`` at ``now``) and store the valid ones: the
    endpoint's whole work after parsing, callable on its own (benchmarks)."""
    batch = validate(events, Window.at(now, settings))
    inserted = store(engine, org, batch, now)
    return Outcome(inserted, len(batch) - inserted + batch.duplicates, batch.rejected)
