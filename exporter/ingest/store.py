"""Storing a validated batch in `pushed_events`: one INSERT, idempotent by (organization, id),
committed before it returns; the rows actually inserted are counted (the rest were there).

Blocking: call it in a thread (`exporter.dbcall.run_db`). `commit_xid` (PostgreSQL) and `seq`
(SQLite) are never written: their defaults record the commit order the tick folds by.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from dashboard_metrics.core.db import rollup_engine
from dashboard_metrics.core.schema import pushed_events
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.ingest.events import Batch

# One statement per batch: the columns travel as arrays (the rollup schema is on the search
# path of rollup connections). DO NOTHING: a retried or repeated event keeps its first row.
PG_INSERT = (
    "INSERT INTO pushed_events (organization_id, event_id, metric_name, value, event_time,"
    " model, workflow, deployment, received_at)"
    " SELECT %s, e.event_id, e.metric_name, e.value, e.event_time, e.model, e.workflow,"
    " e.deployment, %s"
    " FROM unnest(%s::text[], %s::text[], %s::float8[], %s::timestamptz[], %s::text[],"
    " %s::text[], %s::text[])"
    " AS e(event_id, metric_name, value, event_time, model, workflow, deployment)"
    " ON CONFLICT (organization_id, event_id) DO NOTHING"
)


def ingest_engine(settings: Settings) -> Engine:
    """The engine the endpoint writes with, a small pool of its own. On SQLite it is opened
    the readers' way (never creating the file: a service must not leave an empty database
    where the real one was moved away); its one-statement transactions need no early lock."""
    return rollup_engine(settings, writer=False, pool_size=4, max_overflow=4)


def _insert_pg(conn: Connection, org: str, batch: Batch, received_at: datetime) -> int:
    model, workflow, deployment = batch.labels
    params = (
        org,
        received_at,
        batch.ids,
        batch.metrics,
        batch.values,
        batch.times,
        model,
        workflow,
        deployment,
    )
    # The command tag counts the rows inserted, not the ones DO NOTHING skipped.
    return conn.exec_driver_sql(PG_INSERT, params).rowcount


def _insert_sqlite(conn: Connection, org: str, batch: Batch, received_at: datetime) -> int:
    model, workflow, deployment = batch.labels
    rows = [
        {
            "organization_id": org,
            "event_id": batch.ids[i],
            "metric_name": batch.metrics[i],
            "value": batch.values[i],
            "event_time": batch.times[i],
            "model": model[i],
            "workflow": workflow[i],
            "deployment": deployment[i],
            "received_at": received_at,
        }
        for i in range(len(batch))
    ]
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
