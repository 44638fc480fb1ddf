"""Storing a validated batch: the events, idempotent by (organization, id), and the partial
sums of the new ones, through core/eventstore.py, committed before it returns.

Blocking: call it in a thread (`exporter.dbcall.run_db`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from dashboard_metrics.core import eventstore
from dashboard_metrics.core.db import rollup_engine
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.ingest.events import Batch, Window, validate


def ingest_engine(settings: Settings) -> Engine:
    """The engine the endpoint writes with, a small pool of its own. On SQLite it is opened
    the readers' way (never creating the file: a service must not leave an empty database
    where the real one was moved away); its one-statement transactions need no early lock."""
    return rollup_engine(settings, writer=False, pool_size=4, max_overflow=4)


def store(engine: Engine, org: str, batch: Batch, received_at: datetime) -> int:
    """Store ``batch``'s events for ``org`` with their partial sums, in one transaction
    committed before this returns; the number of events that were new."""
    if not len(batch):
        return 0
    if engine.dialect.name == "postgresql":
        # One statement, atomic on its own: autocommit spares the BEGIN and COMMIT round trips.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return eventstore.store(conn, org, batch.rows, received_at)
    with engine.begin() as conn:
        return eventstore.store(conn, org, batch.rows, received_at)


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
