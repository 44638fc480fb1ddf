"""Finding the dirty hours: which event hours changed since the previous tick.

Every source table that creates or attributes events has a watermark: the newest change
(``modified_at``; ``created_at`` for the insert-only page_usage) seen, never past the source
snapshot's own clock. A tick scans the rows changed after ``watermark - overlap`` (the overlap
catches transactions that commit late) and groups them by the hour of the events they create
or attribute:

- an event row dirties its own hour;
- an execution dirties the hours of its file executions (documents and failed pages follow
  the execution's workflow), a workflow the hours of its executions and their files, a pipeline
  or API deployment the hours of its executions (the organization, or ETL versus TASK);
- new page rows of a failed file dirty that file's hour (failed_pages).

Each scan keeps, per hour, a fingerprint of the rows it saw (count, newest change, sum of
change times) taken at the next tick's threshold. An hour is dirty only when its fingerprint
differs: an idle tick recomputes nothing, while a late commit inside the overlap, an update or a
delete still changes its hour's fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, func, select
from sqlalchemy.engine import Connection

from aggregator import source_tables as st
from aggregator import state
from aggregator.catalogue import change_columns
from aggregator.rollup_tables import Granularity
from aggregator.sourcesql import as_utc_or_none, bucket_expr, file_id_matches_run_id, parse_bucket

Fingerprints = dict[str, list[str]]  # hour (ISO) -> [count, newest change, sum of change times]

# Tables that attribute events to an organization or a metric without creating any.
ATTRIBUTING_TABLES = ("workflow", "pipeline", "api_deployment")


def watermark_tables() -> dict[str, str]:
    """Every watched table -> its change column."""
    return {**change_columns(), **{name: "modified_at" for name in ATTRIBUTING_TABLES}}


@dataclass(frozen=True)
class Scan:
    """Changed rows of ``table`` (by its change column) grouped by the hour of ``event_time``."""

    name: str
    table: str
    joined: Callable[[str], FromClause]
    event_time: Callable[[], ColumnElement[Any]]
    where: Callable[[str], list[ColumnElement[bool]]] = lambda _dialect: []


def _direct(table: str) -> Scan:
    source = st.SOURCE_TABLES[table]
    return Scan(table, table, lambda _d: source, lambda: source.c.created_at)


_we, _wfe, _wf = st.workflow_execution, st.workflow_file_execution, st.workflow


def _files_of_executions(_dialect: str) -> FromClause:
    return _wfe.join(_we, _we.c.id == _wfe.c.workflow_execution_id)


def _pages_of_files(dialect: str) -> FromClause:
    pages = st.page_usage
    return pages.join(_wfe, file_id_matches_run_id(_wfe.c.id, pages.c.run_id, dialect))


SCANS: tuple[Scan, ...] = (
    *(_direct(table) for table in sorted(change_columns())),
    Scan(
        "failed_file_pages",
        "page_usage",
        _pages_of_files,
        lambda: _wfe.c.created_at,
        lambda _d: [_wfe.c.status == "ERROR"],
    ),
    Scan(
        "execution_files",
        "workflow_execution",
        _files_of_executions,
        lambda: _wfe.c.created_at,
    ),
    Scan(
        "workflow_executions",
        "workflow",
        lambda _d: _we.join(_wf, _wf.c.id == _we.c.workflow_id),
        lambda: _we.c.created_at,
    ),
    Scan(
        "workflow_files",
        "workflow",
        lambda d: _files_of_executions(d).join(_wf, _wf.c.id == _we.c.workflow_id),
        lambda: _wfe.c.created_at,
    ),
    Scan(
        "pipeline_executions",
        "pipeline",
        lambda _d: _we.join(st.pipeline, st.pipeline.c.id == _we.c.pipeline_id),
        lambda: _we.c.created_at,
    ),
    Scan(
        "api_deployment_executions",
        "api_deployment",
        lambda _d: _we.join(st.api_deployment, st.api_deployment.c.id == _we.c.pipeline_id),
        lambda: _we.c.created_at,
    ),
)


def _change_time_sum(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.sum(func.extract("epoch", column))
    return func.sum(func.julianday(column))


def _fingerprint_query(scan: Scan, since: datetime | None, dialect: str) -> Select[Any]:
    changed = st.SOURCE_TABLES[scan.table].c[watermark_tables()[scan.table]]
    hour = bucket_expr(scan.event_time(), Granularity.HOUR, dialect)
    conditions = scan.where(dialect)
    if since is not None:
        conditions.append(changed > since)
    return (
        select(
            hour.label("hour"),
            func.count().label("n"),
            func.max(changed).label("latest"),
            _change_time_sum(changed, dialect).label("total"),
        )
        .select_from(scan.joined(dialect))
        .where(*conditions)
        .group_by(hour)
    )


def fingerprints(
    conn: Connection, scan: Scan, since: datetime | None
) -> tuple[Fingerprints, datetime | None]:
    """Per event hour, the fingerprint of the rows changed after ``since``; and the newest
    change among them."""
    result: Fingerprints = {}
    newest: datetime | None = None
    for row in conn.execute(_fingerprint_query(scan, since, conn.dialect.name)):
        hour = parse_bucket(row.hour, Granularity.HOUR)
        latest = as_utc_or_none(row.latest)
        result[hour.isoformat()] = [str(row.n), str(latest), str(row.total)]
        if latest is not None and (newest is None or latest > newest):
            newest = latest
    return result, newest


def _newest_change(conn: Connection, table: str, since: datetime | None) -> datetime | None:
    changed = st.SOURCE_TABLES[table].c[watermark_tables()[table]]
    query = select(func.max(changed))
    if since is not None:
        query = query.where(changed > since)
    return as_utc_or_none(conn.execute(query).scalar())


def source_now(conn: Connection) -> datetime | None:
    """The source snapshot's clock (PostgreSQL's transaction time); None on SQLite, whose
    clock is the aggregator's own."""
    if conn.dialect.name != "postgresql":
        return None
    return as_utc_or_none(conn.exec_driver_sql("SELECT now()").scalar())


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass
class ChangeScan:
    dirty: set[datetime]
    state: dict[str, Any]  # aggregator_state values to store with the tick


def scan_changes(
    conn: Connection, stored: dict[str, Any], cap: datetime, overlap: timedelta
) -> ChangeScan:
    """The hours changed since the previous tick, and the next watermarks and fingerprints.

    ``cap`` bounds every watermark: a row stamped in the future (a skewed clock) must not hide
    ordinary rows written after it."""
    marks = {table: _parse(stored.get(state.watermark_key(table))) for table in watermark_tables()}
    since = {table: None if mark is None else mark - overlap for table, mark in marks.items()}
    dirty: set[datetime] = set()
    seen: dict[str, Fingerprints] = {}
    newest: dict[str, datetime | None] = dict.fromkeys(watermark_tables())
    for scan in SCANS:
        current, latest = fingerprints(conn, scan, since[scan.table])
        before = stored.get(state.fingerprint_key(scan.name))
        old: Fingerprints = {}  # none yet, or taken at another threshold: all seen is new
        if before is not None and before["since"] == _iso(since[scan.table]):
            old = before["hours"]
        dirty |= {
            datetime.fromisoformat(hour)
            for hour in current.keys() | old.keys()
            if current.get(hour) != old.get(hour)
        }
        seen[scan.name] = current
        if scan.table == scan.name:  # the table's own scan saw its newest change
            newest[scan.table] = latest
    for table in ATTRIBUTING_TABLES:
        newest[table] = _newest_change(conn, table, since[table])

    values: dict[str, Any] = {}
    next_since: dict[str, datetime | None] = {}
    for table, mark in marks.items():
        candidates = [m for m in (mark, newest[table]) if m is not None]
        if not candidates:
            next_since[table] = None
            continue
        watermark = min(max(candidates), cap)
        values[state.watermark_key(table)] = watermark.isoformat()
        next_since[table] = watermark - overlap
    for scan in SCANS:
        threshold = next_since[scan.table]
        hours = seen[scan.name]
        if threshold != since[scan.table]:  # the watermark moved: fingerprint the new window
            hours, _ = fingerprints(conn, scan, threshold)
        values[state.fingerprint_key(scan.name)] = {"since": _iso(threshold), "hours": hours}
    return ChangeScan(dirty, values)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
