"""Set-based SQL over the pushed events (`pushed_events`, in the rollup database): the pushed
metrics' rows of any tier, computed like core/sourcesql.py computes the built-in ones.

Events are kept `events_retention_days`; a bucket is computed from them only when it starts at
or after the oldest event kept (`first_whole_bucket`). Older buckets keep the rows they have.
"""

from __future__ import annotations

from datetime import date, datetime
from operator import sub
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, select
from sqlalchemy.engine import Connection

from dashboard_metrics.core.catalogue import BUILTIN_NAMES, METRICS, Metric, pushed_metrics
from dashboard_metrics.core.schema import BREAKDOWN_DIMS, Granularity, in_ranges, pushed_events
from dashboard_metrics.core.sourcesql import TimeRanges, bucket_expr, parse_bucket
from dashboard_metrics.core.timeutil import DAY, HOUR, day_start, month_of, next_month
from dashboard_metrics.core.values import Key, RawRow, Rollup, as_rollup, without_dims


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


def _query(granularity: Granularity, ranges: TimeRanges, dialect: str) -> Any:
    """One GROUP BY (organization, bucket, metric, dimensions) over every pushed metric: the
    value, the count, then each histogram's cumulative "value <= bound" counts (its own
    columns, zero in other metrics' rows)."""
    events = pushed_events.c
    keys: list[ColumnElement[Any]] = [
        events.organization_id,
        bucket_expr(events.event_time, granularity, dialect).label("bucket"),
        events.metric_name,
        *(events[d] for d in BREAKDOWN_DIMS),
    ]
    bounds = [
        func.sum(case((and_(events.metric_name == m.name, events.value <= literal(b)), 1), else_=0))
        for m in _histograms()
        for b in m.buckets
    ]
    names = [entry.name for entry in pushed_metrics()]
    return (
        select(*keys, func.sum(events.value), func.count(), *bounds)
        .where(in_ranges(events.event_time, ranges), events.metric_name.in_(names))
        .group_by(*keys)
    )


def _histograms() -> list[Metric]:
    return [entry for entry in pushed_metrics() if entry.is_histogram]


def _bucket_columns() -> dict[str, tuple[int, int]]:
    """Per histogram: where its cumulative counts start and end in a `_query` row."""
    columns: dict[str, tuple[int, int]] = {}
    at = 3 + len(BREAKDOWN_DIMS) + 2
    for entry in _histograms():
        columns[entry.name] = (at, at + len(entry.buckets))
        at += len(entry.buckets)
    return columns


def compute_rows(conn: Connection, granularity: Granularity, ranges: TimeRanges) -> list[RawRow]:
    """The pushed metrics per organization, bucket and label values (the breakdown's raw rows,
    '' for labels an event has not), for every pushed metric."""
    if not ranges or not pushed_metrics():
        return []
    width = 3 + len(BREAKDOWN_DIMS)
    histograms = _bucket_columns()
    periods: dict[Any, datetime | date] = {}
    rows: list[RawRow] = []
    for row in conn.execute(_query(granularity, ranges, conn.dialect.name)):
        raw = row[1]
        period = periods.get(raw)
        if period is None:
            period = periods[raw] = parse_bucket(raw, granularity)
        value, count = float(row[width]), int(row[width + 1])
        buckets = None
        span = histograms.get(row[2])
        if span is not None:
            cumulative = tuple(map(int, row[span[0] : span[1]]))
            buckets = tuple(map(sub, (*cumulative, count), (0, *cumulative)))
        rows.append((row[0], period, row[2], value, count, buckets, *row[3:width]))
    return rows


def compute_families(
    conn: Connection, granularity: Granularity, ranges: TimeRanges
) -> tuple[Rollup, Rollup]:
    """The pushed metrics' organization rows and breakdown rows (of the metrics with
    dimensions) from one read of the events."""
    rows = compute_rows(conn, granularity, ranges)
    dimensioned = {entry.name for entry in pushed_metrics() if entry.dimensions}
    breakdown = as_rollup(row for row in rows if row[2] in dimensioned)
    return as_rollup(without_dims(rows)), breakdown
