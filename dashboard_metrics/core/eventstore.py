"""Storing accepted pushed events: the events (unique per organization and id) and, in the same
transaction, the partial sums of the new ones per hour, metric and label values, which the tick
folds into the tiers (aggregator/events.py). The ingest endpoint, the tests and the benchmark
all store through `store`."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from dashboard_metrics.core.catalogue import METRICS, Metric, pushed_metrics
from dashboard_metrics.core.schema import pushed_event_partials, pushed_events
from dashboard_metrics.core.values import dump_buckets

# id, metric, value, event time (aware), model, workflow, deployment: one validated event.
PushedEvent = tuple[str, str, float, datetime, str, str, str]

# PostgreSQL: one statement stores the batch and its partial sums, atomic on its own (the
# caller may run it in autocommit: no BEGIN and COMMIT round trips). The batch goes as one JSON
# text of [id, metric, value, time, model, workflow, deployment] arrays (orjson writes it in
# well under a millisecond; PostgreSQL parses it in C), not as array parameters, which psycopg
# dumps element by element. The partials are summed from the rows the insert returns: the new
# events only. Metric names and bounds come from the validated catalogue, never from requests.
_STORE_PG = """
WITH new AS (
  INSERT INTO pushed_events
    (organization_id, event_id, metric_name, value, event_time, model, workflow, deployment,
     received_at)
  SELECT %(org)s, e->>0, e->>1, CAST(e->>2 AS float8), CAST(e->>3 AS timestamptz), e->>4,
         e->>5, e->>6, %(received_at)s
  FROM json_array_elements(CAST(%(batch)s AS json)) AS e
  ON CONFLICT DO NOTHING
  RETURNING metric_name, value, event_time, model, workflow, deployment
), partials AS (
  INSERT INTO pushed_event_partials
    (organization_id, hour, metric_name, model, workflow, deployment, metric_value,
     metric_count, buckets)
  SELECT %(org)s, date_trunc('hour', event_time, 'UTC'), metric_name, model, workflow,
         deployment, sum(value), count(*), {buckets}
  FROM new
  GROUP BY 2, 3, 4, 5, 6
)
SELECT count(*) FROM new
"""
# SQLite binds at most 32,766 values per statement; nine per event.
_SQLITE_ROWS = 3000


def store(conn: Connection, org: str, events: Sequence[PushedEvent], received_at: datetime) -> int:
    """Insert ``events`` (distinct ids, validated) of ``org`` in the caller's transaction; an
    id already stored is left as it is. Returns how many were new."""
    if not events:
        return 0
    if conn.dialect.name == "postgresql":
        batch = orjson.dumps(events).decode()
        parameters = {"org": org, "received_at": received_at, "batch": batch}
        return int(conn.exec_driver_sql(_store_sql(pushed_metrics()), parameters).scalar_one())
    new_ids = _insert(conn, org, events, received_at)
    if not new_ids:
        return 0
    new = events if len(new_ids) == len(events) else [e for e in events if e[0] in new_ids]
    conn.execute(insert(pushed_event_partials), partial_sums(org, new))
    return len(new)


@lru_cache(maxsize=8)
def _store_sql(metrics: tuple[Metric, ...]) -> str:
    """The PostgreSQL statement for the installed pushed metrics: each histogram's per-bucket
    counts as the stored JSON text (bounds inclusive, +Inf last), NULL for counters."""
    histograms = [m for m in metrics if m.is_histogram]
    if not histograms:
        return _STORE_PG.format(buckets="NULL")
    cases = []
    for entry in histograms:
        lower = (None, *entry.buckets)
        upper = (*entry.buckets, None)
        slots = [
            "sum(CASE WHEN "
            + " AND ".join(
                [f"value > {low!r}"] * (low is not None)
                + [f"value <= {high!r}"] * (high is not None)
            )
            + " THEN 1 ELSE 0 END)"
            for low, high in zip(lower, upper, strict=True)
        ]
        text = " || ', ' || ".join(slots)
        cases.append(f"WHEN '{entry.name}' THEN '[' || {text} || ']'")
    return _STORE_PG.format(buckets=f"CASE metric_name {' '.join(cases)} END")


def _insert(
    conn: Connection, org: str, events: Sequence[PushedEvent], received_at: datetime
) -> set[str]:
    """SQLite: insert ``events``; the ids that were new."""
    stamp = received_at.astimezone(UTC).replace(tzinfo=None)
    new: set[str] = set()
    for start in range(0, len(events), _SQLITE_ROWS):
        rows = [
            {
                "organization_id": org,
                "event_id": event_id,
                "metric_name": metric,
                "value": value,
                "event_time": at,
                "model": model,
                "workflow": workflow,
                "deployment": deployment,
                "received_at": stamp,
            }
            for event_id, metric, value, at, model, workflow, deployment in events[
                start : start + _SQLITE_ROWS
            ]
        ]
        statement = (
            sqlite_insert(pushed_events)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(pushed_events.c.event_id)
        )
        new.update(row[0] for row in conn.execute(statement))
    return new


def partial_sums(org: str, events: Sequence[PushedEvent]) -> list[dict[str, Any]]:
    """The events' sums per hour, metric and label values, as pushed_event_partials rows."""
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for _id, metric, value, at, model, workflow, deployment in events:
        hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        key = (hour, metric, model, workflow, deployment)
        acc = sums.get(key)
        if acc is None:
            entry = METRICS[metric]
            slots = [0] * entry.bucket_slots if entry.is_histogram else None
            acc = sums[key] = [0.0, 0, slots, entry.buckets]
        acc[0] += value
        acc[1] += 1
        if acc[2] is not None:
            acc[2][bisect.bisect_left(acc[3], value)] += 1  # bounds are inclusive upper ones
    return [
        {
            "organization_id": org,
            "hour": hour,
            "metric_name": metric,
            "model": model,
            "workflow": workflow,
            "deployment": deployment,
            "metric_value": value,
            "metric_count": count,
            "buckets": None if slots is None else dump_buckets(tuple(slots)),
        }
        for (hour, metric, model, workflow, deployment), (value, count, slots, _b) in sums.items()
    ]
