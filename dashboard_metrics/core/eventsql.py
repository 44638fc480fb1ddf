"""Set-based SQL over the pushed events (`pushed_events`, in the rollup database): the pushed
metrics' rows of any tier, computed like core/sourcesql.py computes the built-in ones.

Events are kept `events_retention_days`; a bucket is computed from them only when it starts at
or after the oldest event kept (`first_whole_bucket`). Older buckets keep the rows they have.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from operator import sub
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.engine import Connection

from dashboard_metrics.core.catalogue import BUILTIN_NAMES, METRICS, Metric, pushed_metrics
from dashboard_metrics.core.schema import BREAKDOWN_DIMS, Granularity, in_ranges, pushed_events
from dashboard_metrics.core.sourcesql import TimeRanges, bucket_expr, parse_bucket
from dashboard_metrics.core.timeutil import DAY, HOUR, day_start, month_of, next_month
from dashboard_metrics.core.values import Key, RawRow, Rollup, as_rollup


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
    metrics: Sequence[Metric],
    granularity: Granularity,
    ranges: TimeRanges,
    dialect: str,
    dims: bool,
) -> Any:
    """One GROUP BY (organization, bucket, metric[, dimensions]) over ``metrics`` sharing one
    bucket layout (every counter, or one histogram)."""
    events = pushed_events.c
    keys: list[ColumnElement[Any]] = [
        events.organization_id,
        bucket_expr(events.event_time, granularity, dialect).label("bucket"),
        events.metric_name,
        *((events[d] for d in BREAKDOWN_DIMS) if dims else ()),
    ]
    bounds = metrics[0].buckets
    columns = [
        *keys,
        func.sum(events.value),
        func.count(),
        *(func.sum(case((events.value <= literal(b), 1), else_=0)) for b in bounds),
    ]
    names = [entry.name for entry in metrics]
    return (
        select(*columns)
        .where(in_ranges(events.event_time, ranges), events.metric_name.in_(names))
        .group_by(*keys)
    )


def _layouts(breakdown: bool) -> Iterator[list[Metric]]:
    """The metrics one query computes: every counter together, each histogram apart."""
    selected = [m for m in pushed_metrics() if m.dimensions or not breakdown]
    counters = [m for m in selected if not m.is_histogram]
    if counters:
        yield counters
    for entry in selected:
        if entry.is_histogram:
            yield [entry]


def compute_rows(
    conn: Connection, granularity: Granularity, ranges: TimeRanges, breakdown: bool = False
) -> Iterator[RawRow]:
    """The pushed metrics per organization and bucket (and, for the ``breakdown``, per label
    values; only metrics with dimensions have breakdown rows), as sourcesql's raw rows."""
    if not ranges:
        return
    dialect = conn.dialect.name
    for metrics in _layouts(breakdown):
        histogram = metrics[0].is_histogram
        width = 3 + (len(BREAKDOWN_DIMS) if breakdown else 0)
        periods: dict[Any, datetime | date] = {}
        for row in conn.execute(_query(metrics, granularity, ranges, dialect, breakdown)):
            raw = row[1]
            period = periods.get(raw)
            if period is None:
                period = periods[raw] = parse_bucket(raw, granularity)
            value, count = float(row[width]), int(row[width + 1])
            buckets = None
            if histogram:
                cumulative = tuple(map(int, row[width + 2 :]))
                buckets = tuple(map(sub, (*cumulative, count), (0, *cumulative)))
            yield (row[0], period, row[2], value, count, buckets, *row[3:width])


def compute(
    conn: Connection, granularity: Granularity, ranges: TimeRanges, breakdown: bool = False
) -> Rollup:
    return as_rollup(compute_rows(conn, granularity, ranges, breakdown))
