"""The pushed metrics' rows of any tier, from the partial sums the ingest stored beside the
events (`pushed_event_partials`, in the rollup database; core/eventstore.py): a bucket's row is
the sum of its partials, as core/sourcesql.py's rows are sums of source rows.

The events and their partials are kept `events_retention_days`; a bucket is computed from the
partials only when it starts at or after the oldest one kept (`first_whole_bucket`). Older
buckets keep the rows they have.
"""

from __future__ import annotations

from datetime import date, datetime
from operator import add
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from dashboard_metrics.core.catalogue import BUILTIN_NAMES, METRICS, pushed_metrics
from dashboard_metrics.core.schema import (
    BREAKDOWN_DIMS,
    Granularity,
    in_ranges,
    pushed_event_partials,
)
from dashboard_metrics.core.sourcesql import TimeRanges, bucket_expr, parse_bucket
from dashboard_metrics.core.timeutil import DAY, HOUR, day_start, month_of, next_month
from dashboard_metrics.core.values import (
    Key,
    RawRow,
    Rollup,
    as_rollup,
    parse_buckets,
    without_dims,
)


def first_whole_bucket(events_from: datetime, granularity: Granularity) -> datetime:
    """The start of the first bucket of ``granularity`` wholly at or after ``events_from``."""
    if granularity is Granularity.HOUR:
        start = events_from.replace(minute=0, second=0, microsecond=0)
        return start if start == events_from else start + HOUR
    day = day_start(events_from.date())
    if granularity is Granularity.DAY:
        return day if day == events_from else day + DAY
    month = month_of(events_from)
    return day_start(month) if day_start(month) == events_from else day_start(next_month(month))


def clip(ranges: TimeRanges, start: datetime) -> list[tuple[datetime, datetime]]:
    """The parts of ``ranges`` at or after ``start``."""
    return [(max(a, start), b) for a, b in ranges if b > start]


def _period_start(period: datetime | date) -> datetime:
    return period if isinstance(period, datetime) else day_start(period)


def kept_by_events(key: Key, first: datetime) -> bool:
    """A stored row the pushed events do not recompute: a pushed metric's row of a bucket
    older than the events kept (``first``: the first whole bucket), or the row of a metric no
    longer declared (its events cannot be read without its declaration). Recomputes from the
    source leave these rows as they are."""
    name = key.metric_name
    if name in BUILTIN_NAMES:
        return False
    entry = METRICS.get(name)
    return entry is None or not entry.pushed or _period_start(key.period) < first


def _query(
    granularity: Granularity, ranges: TimeRanges, dialect: str, organization_id: str | None
) -> Any:
    """The partials of every pushed metric within ``ranges`` (of one organization when given),
    with their bucket of ``granularity``."""
    partials = pushed_event_partials.c
    query = select(
        partials.organization_id,
        bucket_expr(partials.hour, granularity, dialect).label("bucket"),
        partials.metric_name,
        *(partials[d] for d in BREAKDOWN_DIMS),
        partials.metric_value,
        partials.metric_count,
        partials.buckets,
    ).where(
        in_ranges(partials.hour, ranges),
        partials.metric_name.in_([entry.name for entry in pushed_metrics()]),
    )
    if organization_id is not None:
        query = query.where(partials.organization_id == organization_id)
    return query


def compute_rows(
    conn: Connection,
    granularity: Granularity,
    ranges: TimeRanges,
    organization_id: str | None = None,
) -> list[RawRow]:
    """The pushed metrics per organization, bucket and label values (the breakdown's raw rows,
    '' for labels an event has not): the sums of their partials."""
    if not ranges or not pushed_metrics():
        return []
    periods: dict[Any, datetime | date] = {}
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for org, raw, name, model, workflow, deployment, value, count, buckets in conn.execute(
        _query(granularity, ranges, conn.dialect.name, organization_id)
    ):
        period = periods.get(raw)
        if period is None:
            period = periods[raw] = parse_bucket(raw, granularity)
        key = (org, period, name, model, workflow, deployment)
        acc = sums.get(key)
        slots = parse_buckets(buckets)
        if acc is None:
            sums[key] = [float(value), int(count), slots]
            continue
        acc[0] += value
        acc[1] += count
        if slots is not None:
            acc[2] = tuple(map(add, acc[2], slots))
    return [(*key[:3], v, c, b, *key[3:]) for key, (v, c, b) in sums.items()]


def compute_families(
    conn: Connection,
    granularity: Granularity,
    ranges: TimeRanges,
    organization_id: str | None = None,
) -> tuple[Rollup, Rollup]:
    """The pushed metrics' organization rows and breakdown rows (of the metrics with
    dimensions) from one read of the partials."""
    rows = compute_rows(conn, granularity, ranges, organization_id)
    dimensioned = {entry.name for entry in pushed_metrics() if entry.dimensions}
    breakdown = as_rollup(row for row in rows if row[2] in dimensioned)
    return as_rollup(without_dims(rows)), breakdown
