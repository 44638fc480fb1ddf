"""Reading rollup rows of one organization for a plan (blocking; run in a thread)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.engine import Connection

from dashboard_metrics.core import eventsql, sourcesql
from dashboard_metrics.core.catalogue import METRICS
from dashboard_metrics.core.schema import (
    BREAKDOWN_TIERS,
    DAILY,
    HOURLY,
    MONTHLY,
    Granularity,
    Tier,
    in_ranges,
)
from dashboard_metrics.core.timeutil import as_period, day_start
from dashboard_metrics.core.values import DEFAULT_PROJECT, DEFAULT_TAG, Rollup, as_datetime
from dashboard_metrics.exporter.api.dims import NO_BREAKDOWN, Breakdown
from dashboard_metrics.exporter.api.params import MetricFilter
from dashboard_metrics.exporter.api.plan import ReadPlan


class Cell(NamedTuple):
    """One rollup row: its period start (UTC) and tier, and what it holds."""

    start: datetime
    tier: str
    metric_name: str
    metric_type: str
    project: str
    tag: str
    value: float
    events: int  # metric_count: the number of source events
    # The grouped dimensions' values, in group_by order ('' = none); () at organization level.
    group: tuple[str, ...] = ()


def filters(table: Table, org: str, flt: MetricFilter) -> list[ColumnElement[bool]]:
    """The rows of ``table`` (a rollup tier) of ``org`` that ``flt`` selects."""
    where = [table.c.organization_id == org]
    for column, value in zip(("metric_name", "project", "tag"), flt.parts(), strict=True):
        if value is not None:
            where.append(table.c[column] == value)
    return where


def _read(
    conn: Connection,
    tier: Tier,
    org: str,
    flt: MetricFilter,
    ranges: list[tuple[Any, Any]],
) -> list[Cell]:
    if not ranges:
        return []
    if flt.breakdown.active:
        return _read_breakdown(conn, BREAKDOWN_TIERS[tier.name], org, flt, ranges)
    table = tier.table
    query = select(
        tier.period,
        table.c.metric_name,
        table.c.metric_type,
        table.c.project,
        table.c.tag,
        table.c.metric_value,
        table.c.metric_count,
    ).where(*filters(table, org, flt), in_ranges(tier.period, ranges))
    out = []
    days: dict[Any, datetime] = {}
    for start, name, kind, project, tag, value, count in conn.execute(query).all():
        if isinstance(start, datetime):
            when = start
        else:
            when = days.get(start) or days.setdefault(start, day_start(as_period(start)))
        out.append(Cell(when, tier.name, name, kind, project, tag, float(value), int(count)))
    return out


def _read_breakdown(
    conn: Connection,
    tier: Tier,
    org: str,
    flt: MetricFilter,
    ranges: list[tuple[Any, Any]],
) -> list[Cell]:
    """The breakdown tier's rows summed over the dimensions not grouped by (its rows carry the
    default project and tag)."""
    names = source_metrics(flt)
    if not names:
        return []
    table = tier.table
    breakdown = flt.breakdown
    grouped = [table.c[dimension.value] for dimension in breakdown.group_by]
    keys = [tier.period, table.c.metric_name, table.c.metric_type, *grouped]
    query = (
        select(*keys, func.sum(table.c.metric_value), func.sum(table.c.metric_count))
        .where(
            table.c.organization_id == org,
            table.c.metric_name.in_(names),
            *(table.c[dimension.value] == value for dimension, value in breakdown.filters),
            in_ranges(tier.period, ranges),
        )
        .group_by(*keys)
    )
    out = []
    days: dict[Any, datetime] = {}
    width = len(grouped)
    for row in conn.execute(query).all():
        start = row[0]
        if isinstance(start, datetime):
            when = start
        else:
            when = days.get(start) or days.setdefault(start, day_start(as_period(start)))
        value, count = row[3 + width], row[4 + width]
        group = tuple(row[3 : 3 + width])
        out.append(
            Cell(
                when,
                tier.name,
                row[1],
                row[2],
                DEFAULT_PROJECT,
                DEFAULT_TAG,
                float(value),
                int(count),
                group,
            )
        )
    return out


def read_hours(
    conn: Connection, org: str, flt: MetricFilter, start: datetime, end: datetime
) -> list[Cell]:
    return _read(conn, HOURLY, org, flt, [(start, end)])


def source_metrics(flt: MetricFilter) -> list[str]:
    """The metrics a filter selects among source events, which all carry the default project
    and tag: the same rows the filter selects from the rollups."""
    metric, project, tag = flt.parts()
    if project not in (None, DEFAULT_PROJECT) or tag not in (None, DEFAULT_TAG):
        return []
    if flt.breakdown.active:
        return flt.breakdown.metrics(metric)
    return sorted(METRICS) if metric is None else [metric]


def _live_rows(
    conn: Connection,
    org: str,
    names: list[str],
    ranges: list[tuple[datetime, datetime]],
    breakdown: bool,
) -> Rollup:
    if all(METRICS[name].pushed for name in names):
        families = eventsql.compute_families(conn, Granularity.HOUR, ranges, org)
        rows = families[1] if breakdown else families[0]
        return {key: agg for key, agg in rows.items() if key.metric_name in names}
    return sourcesql.compute(
        conn, Granularity.HOUR, ranges, organization_id=org, metric_names=names, breakdown=breakdown
    )


def live_cells(
    conn: Connection,
    org: str,
    names: list[str],
    ranges: list[tuple[datetime, datetime]],
    tier: str,
    breakdown: Breakdown = NO_BREAKDOWN,
) -> list[Cell]:
    """The hours of ``names`` computed from the source tables (``conn``: the source), or, for
    pushed metrics, from their partial sums (``conn``: the rollup database), labelled ``tier``."""
    if breakdown.active:
        return _live_breakdown(conn, org, names, ranges, tier, breakdown)
    rows = _live_rows(conn, org, names, ranges, breakdown=False)
    return [
        Cell(
            as_datetime(key.period),
            tier,
            key.metric_name,
            METRICS[key.metric_name].type.value,
            DEFAULT_PROJECT,  # source events all carry the default project and tag
            DEFAULT_TAG,
            agg.value,
            agg.count,
        )
        for key, agg in rows.items()
    ]


def _live_breakdown(
    conn: Connection,
    org: str,
    names: list[str],
    ranges: list[tuple[datetime, datetime]],
    tier: str,
    breakdown: Breakdown,
) -> list[Cell]:
    """The source's breakdown rows, filtered and summed over the dimensions not grouped by."""
    rows = _live_rows(conn, org, names, ranges, breakdown=True)
    sums: dict[tuple[Any, str, tuple[str, ...]], list[float]] = {}
    for key, agg in rows.items():
        values = key._asdict()
        if any(values[dimension.value] != value for dimension, value in breakdown.filters):
            continue
        group = tuple(values[dimension.value] for dimension in breakdown.group_by)
        entry = sums.setdefault((key.period, key.metric_name, group), [0.0, 0])
        entry[0] += agg.value
        entry[1] += agg.count
    return [
        Cell(
            as_datetime(period),
            tier,
            name,
            METRICS[name].type.value,
            DEFAULT_PROJECT,
            DEFAULT_TAG,
            value,
            int(count),
            group,
        )
        for (period, name, group), (value, count) in sums.items()
    ]


def read_live(
    conn: Connection, org: str, flt: MetricFilter, ranges: list[tuple[datetime, datetime]]
) -> list[Cell]:
    """Hours computed from the source tables (edges the hourly tier no longer holds)."""
    names = source_metrics(flt)
    return live_cells(conn, org, names, ranges, "hourly", flt.breakdown) if names else []


def read_plan(conn: Connection, org: str, flt: MetricFilter, plan: ReadPlan) -> list[Cell]:
    return (
        _read(conn, HOURLY, org, flt, list(plan.hours))
        + _read(conn, DAILY, org, flt, list(plan.days))
        + _read(conn, MONTHLY, org, flt, list(plan.months))
    )
