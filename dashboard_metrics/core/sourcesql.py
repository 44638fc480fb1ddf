"""Set-based SQL over the source tables, derived from the metric catalogue.

One query per (source table, organization path) computes every metric of that group for all
organizations and every bucket of the requested ranges at once (conditional aggregation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from operator import sub
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.engine import Connection

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import FILE_PAGES, Dimension, Metric, OrgVia, metric_groups
from dashboard_metrics.core.schema import BREAKDOWN_DIMS, NO_VALUE, Granularity, in_ranges
from dashboard_metrics.core.timeutil import as_utc_or_none
from dashboard_metrics.core.values import RawRow, Rollup, as_rollup

TimeRanges = Sequence[tuple[datetime, datetime]]

_SQLITE_FORMATS = {
    Granularity.HOUR: "%Y-%m-%d %H:00:00",
    Granularity.DAY: "%Y-%m-%d 00:00:00",
    Granularity.MONTH: "%Y-%m-01 00:00:00",
}


def bucket_expr(
    column: ColumnElement[Any], granularity: Granularity, dialect: str
) -> ColumnElement[Any]:
    """The UTC bucket start of a timestamp column."""
    if dialect == "postgresql":
        return func.date_trunc(granularity.value, func.timezone("UTC", column))
    return func.strftime(_SQLITE_FORMATS[granularity], column)


def parse_bucket(raw: Any, granularity: Granularity) -> datetime | date:
    value = as_utc_or_none(raw)
    assert value is not None, "a bucket start is never NULL"
    return value if granularity is Granularity.HOUR else value.date()


def id_matches_text(
    row_id: ColumnElement[Any], reference: ColumnElement[Any], dialect: str
) -> ColumnElement[bool]:
    """A uuid primary key = a text column holding it (page_usage.run_id, usage.execution_id),
    written so an index on the id serves it."""
    if dialect == "postgresql":
        # The text may be blank or not a uuid: cast only what looks like one.
        as_uuid = case(
            (
                reference.op("~*")(
                    "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
                ),
                cast(reference, row_id.type),
            ),
            else_=None,
        )
        return row_id == as_uuid
    return row_id == reference


def file_id_matches_run_id(
    file_id: ColumnElement[Any], run_id: ColumnElement[Any], dialect: str
) -> ColumnElement[bool]:
    """workflow_file_execution.id = page_usage.run_id."""
    return id_matches_text(file_id, run_id, dialect)


def org_source(org_via: OrgVia) -> tuple[FromClause, ColumnElement[str]]:
    """The FROM clause joining a metric's source table to its organization, and the string id."""
    org = st.organization
    we = st.workflow_execution
    if org_via is OrgVia.USAGE_ORG_PK:
        return st.usage.join(org, org.c.id == st.usage.c.organization_id), org.c.organization_id
    if org_via is OrgVia.PAGE_USAGE_STRING:
        joined = st.page_usage.join(org, org.c.organization_id == st.page_usage.c.organization_id)
        return joined, st.page_usage.c.organization_id
    if org_via is OrgVia.WORKFLOW:
        joined = we.join(st.workflow, st.workflow.c.id == we.c.workflow_id).join(
            org, org.c.id == st.workflow.c.organization_id
        )
        return joined, org.c.organization_id
    if org_via is OrgVia.FILE_EXECUTION_WORKFLOW:
        wfe = st.workflow_file_execution
        joined = (
            wfe.join(we, we.c.id == wfe.c.workflow_execution_id)
            .join(st.workflow, st.workflow.c.id == we.c.workflow_id)
            .join(org, org.c.id == st.workflow.c.organization_id)
        )
        return joined, org.c.organization_id
    if org_via is OrgVia.API_DEPLOYMENT:
        api = st.api_deployment
        joined = we.join(api, api.c.id == we.c.pipeline_id).join(
            org, org.c.id == api.c.organization_id
        )
        return joined, org.c.organization_id
    if org_via is OrgVia.ETL_PIPELINE:
        pipe = st.pipeline
        joined = we.join(
            pipe, and_(pipe.c.id == we.c.pipeline_id, pipe.c.pipeline_type == "ETL")
        ).join(org, org.c.id == pipe.c.organization_id)
        return joined, org.c.organization_id
    raise ValueError(f"unknown organization path {org_via}")


def with_dimension_joins(table: str, from_clause: FromClause, dialect: str) -> FromClause:
    """``from_clause`` joined to the execution its rows belong to, where the dimensions are
    (outer joins: an event without an execution keeps its place, with no dimension values)."""
    we, wfe = st.workflow_execution, st.workflow_file_execution
    if table == "usage":
        return from_clause.outerjoin(we, id_matches_text(we.c.id, st.usage.c.execution_id, dialect))
    if table == "page_usage":
        return from_clause.outerjoin(
            wfe, file_id_matches_run_id(wfe.c.id, st.page_usage.c.run_id, dialect)
        ).outerjoin(we, we.c.id == wfe.c.workflow_execution_id)
    return from_clause  # the execution tables hold their execution already


def dimension_column(table: str, dimension: Dimension) -> ColumnElement[Any]:
    """The SQL of ``dimension`` for an event of ``table`` (the catalogue's DIMENSION_PATHS)."""
    we = st.workflow_execution
    columns: dict[tuple[str, Dimension], ColumnElement[Any]] = {
        ("usage", Dimension.MODEL): st.usage.c.model_name,
        ("usage", Dimension.WORKFLOW): st.usage.c.workflow_id,
        ("usage", Dimension.DEPLOYMENT): we.c.pipeline_id,
        **{
            (name, Dimension.WORKFLOW): we.c.workflow_id
            for name in ("workflow_execution", "workflow_file_execution", "page_usage")
        },
        **{
            (name, Dimension.DEPLOYMENT): we.c.pipeline_id
            for name in ("workflow_execution", "workflow_file_execution", "page_usage")
        },
    }
    return func.coalesce(cast(columns[(table, dimension)], Text), NO_VALUE)


def metric_filter(entry: Metric) -> ColumnElement[bool]:
    table = st.SOURCE_TABLES[entry.table]
    if not entry.where:
        return true()
    return and_(*(table.c[column] == value for column, value in entry.where))


def metric_value(entry: Metric) -> ColumnElement[Any]:
    table = st.SOURCE_TABLES[entry.table]
    if entry.value == FILE_PAGES:
        pages = st.page_usage
        return func.coalesce(
            select(func.sum(pages.c.pages_processed))
            .where(pages.c.run_id == cast(table.c.id, Text))
            .scalar_subquery(),
            0,
        )
    assert entry.value is not None
    return table.c[entry.value]


def group_query(
    metrics: Sequence[Metric],
    granularity: Granularity,
    ranges: TimeRanges,
    dialect: str,
    organization_id: str | None = None,
    dimensions: Sequence[Dimension] = (),
) -> Select[Any]:
    """One GROUP BY (organization, bucket[, dimensions]) query computing every metric of one
    source group."""
    first = metrics[0]
    table = st.SOURCE_TABLES[first.table]
    from_clause, org_column = org_source(first.org_via)
    if dimensions:
        from_clause = with_dimension_joins(first.table, from_clause, dialect)
    time_column = table.c[first.time_column]
    keys: list[ColumnElement[Any]] = [
        org_column.label("org"),
        bucket_expr(time_column, granularity, dialect).label("bucket"),
        *(dimension_column(first.table, d).label(f"d_{d.value}") for d in dimensions),
    ]
    columns = list(keys)
    filters = []
    for index, entry in enumerate(metrics):
        condition = metric_filter(entry)
        filters.append(condition)
        columns.append(func.sum(case((condition, 1), else_=0)).label(f"n{index}"))
        if entry.value is not None:
            value = metric_value(entry)
            columns.append(func.sum(case((condition, value), else_=0)).label(f"v{index}"))
            for slot, bound in enumerate(entry.buckets):
                in_bucket = and_(condition, value <= literal(bound))
                columns.append(func.sum(case((in_bucket, 1), else_=0)).label(f"b{index}_{slot}"))
    where = [in_ranges(time_column, ranges), or_(*filters)]
    if organization_id is not None:
        where.append(org_column == organization_id)
    return select(*columns).select_from(from_clause).where(*where).group_by(*keys)


def _layout(metrics: Sequence[Metric], keys: int) -> list[tuple[Metric, int, int, int]]:
    """Per metric: positions of its count, value and first bucket column in a group_query row
    (after its ``keys`` key columns)."""
    layout = []
    position = keys
    for entry in metrics:
        slots = len(entry.buckets) if entry.value is not None else 0
        value_at = position + 1 if entry.value is not None else -1
        layout.append((entry, position, value_at, position + 2))
        position += 1 + (1 + slots if entry.value is not None else 0)
    return layout


def _dims_getter(dimensions: Sequence[Dimension]) -> Callable[[Any], tuple[str, ...]]:
    """The breakdown's dimension values (every dimension, in BREAKDOWN_DIMS order) of a
    group_query row; '' for the dimensions the query does not group by. Positions are found
    once per query: backfill calls this for millions of rows."""
    if not dimensions:
        return lambda _row: ()
    at = {d.value: 2 + i for i, d in enumerate(dimensions)}
    picks = tuple(at.get(name) for name in BREAKDOWN_DIMS)
    return lambda row: tuple(NO_VALUE if p is None else row[p] for p in picks)


def _raw_rows(
    metrics: Sequence[Metric],
    granularity: Granularity,
    rows: Iterable[Any],
    dimensions: Sequence[Dimension] = (),
) -> Iterator[RawRow]:
    layout = _layout(metrics, 2 + len(dimensions))
    dims_of = _dims_getter(dimensions)
    periods: dict[Any, datetime | date] = {}  # few distinct buckets, many rows: parse once
    for row in rows:
        raw = row[1]
        period = periods.get(raw)
        if period is None:
            period = periods[raw] = parse_bucket(raw, granularity)
        org = row[0]
        dims = dims_of(row)
        for entry, count_at, value_at, buckets_at in layout:
            count = int(row[count_at] or 0)
            if count == 0:
                continue  # buckets with no events have no row
            if value_at < 0:
                yield org, period, entry.name, float(count), count, None, *dims
                continue
            value = float(row[value_at] or 0)
            # Cumulative "value <= bound" counts to per-bucket counts, +Inf last (C-level map).
            # (never NULL: every grouped row sums at least one CASE ... ELSE 0)
            cumulative = tuple(map(int, row[buckets_at : buckets_at + len(entry.buckets)]))
            counts = tuple(map(sub, (*cumulative, count), (0, *cumulative)))
            yield org, period, entry.name, value, count, counts, *dims


def _query_groups(
    breakdown: bool, metric_names: Sequence[str] | None
) -> Iterator[tuple[list[Metric], tuple[Dimension, ...]]]:
    """The metrics one query computes, with the dimensions it groups by: per source group, or
    per source group and carried dimensions for the breakdowns."""
    for metrics in metric_groups().values():
        selected = [m for m in metrics if metric_names is None or m.name in metric_names]
        if not breakdown:
            if selected:
                yield selected, ()
            continue
        by_dims: dict[tuple[Dimension, ...], list[Metric]] = {}
        for entry in selected:
            if entry.dimensions:
                by_dims.setdefault(entry.dimensions, []).append(entry)
        for dims, carried in by_dims.items():
            yield carried, dims


def compute_rows(
    conn: Connection,
    granularity: Granularity,
    ranges: TimeRanges,
    organization_id: str | None = None,
    metric_names: Sequence[str] | None = None,
    breakdown: bool = False,
) -> Iterator[RawRow]:
    """Every catalogue metric per organization and bucket (and, for the ``breakdown``, per
    dimension values), as plain tuples (no per-row objects beyond the tuple: backfill streams
    millions of them)."""
    if not ranges:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # The subplans of failed_pages inflate the cost estimate past jit_above_cost: compiling
        # costs seconds per query and saves nothing on these short aggregations.
        conn.exec_driver_sql("SET LOCAL jit = off")
    for selected, dims in _query_groups(breakdown, metric_names):
        query = group_query(selected, granularity, ranges, dialect, organization_id, dims)
        # fetchall: one driver call instead of a fetchone per row.
        yield from _raw_rows(selected, granularity, conn.execute(query).fetchall(), dims)


def compute(
    conn: Connection,
    granularity: Granularity,
    ranges: TimeRanges,
    organization_id: str | None = None,
    metric_names: Sequence[str] | None = None,
    breakdown: bool = False,
) -> Rollup:
    """Every catalogue metric per organization and bucket over the given time ranges."""
    rows = compute_rows(conn, granularity, ranges, organization_id, metric_names, breakdown)
    return as_rollup(rows)
