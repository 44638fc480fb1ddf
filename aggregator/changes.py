"""Finding the dirty hours: which event hours changed since the previous tick.

The watermark is the source snapshot's clock at the previous tick (or the aggregator's, when
earlier): everything committed before it was seen then. A tick reads the rows whose change time
(``modified_at``; ``created_at`` for the insert-only page_usage) lies after ``watermark -
overlap`` (the overlap catches transactions that commit after they stamped their rows) and
groups them by the hour of the events they touch:

- an event row dirties its own hour;
- an execution dirties the hours of its file executions (documents and failed pages follow the
  execution's workflow);
- new page rows of a failed file dirty that file's hour (failed_pages);
- an execution dirties the hours of its LLM calls and of its files' pages, and a file those
  of its pages: the breakdowns' workflow and deployment follow the execution.

Each of these scans keeps, per hour, a fingerprint of the rows it saw (count, newest change, sum
of change times) at the next tick's threshold. An hour is dirty only when its fingerprint
differs: an idle tick recomputes nothing, while a late commit inside the overlap, an update or
a delete still changes its hour's fingerprint.

Workflows, pipelines and API deployments attribute events without creating any (the
organization, ETL versus TASK), and they change for unrelated reasons too (a pipeline's run
count moves on every run). Their attribution columns are kept in ``source_attribution``: only a
row whose attribution changed dirties the hours of its executions (and their files).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, Text, case, cast, func, select
from sqlalchemy.engine import Connection

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core import state
from dashboard_metrics.core.catalogue import change_columns
from dashboard_metrics.core.schema import Granularity, source_attribution
from dashboard_metrics.core.sourcesql import bucket_expr, file_id_matches_run_id, parse_bucket
from dashboard_metrics.core.timeutil import as_utc_or_none
from dashboard_metrics.core.upsert import upsert_rows

Fingerprints = dict[str, list[str]]  # hour (ISO) -> [count, newest change, sum of change times]


@dataclass(frozen=True)
class Scan:
    """Changed rows of ``table`` (by its change column) grouped by the hour of ``event_time``."""

    name: str
    table: str
    joined: Callable[[str], FromClause]
    event_time: Callable[[], ColumnElement[Any]]
    where: Callable[[], list[ColumnElement[bool]]] = list

    def change_column(self) -> ColumnElement[Any]:
        return st.SOURCE_TABLES[self.table].c[change_columns()[self.table]]


_we, _wfe, _wf = st.workflow_execution, st.workflow_file_execution, st.workflow


def _direct(table: str) -> Scan:
    source = st.SOURCE_TABLES[table]
    return Scan(table, table, lambda _d: source, lambda: source.c.created_at)


def _files_of_executions(_dialect: str) -> FromClause:
    return _wfe.join(_we, _we.c.id == _wfe.c.workflow_execution_id)


def _pages_of_files(dialect: str) -> FromClause:
    pages = st.page_usage
    return pages.join(_wfe, file_id_matches_run_id(_wfe.c.id, pages.c.run_id, dialect))


def _usage_of_executions(_dialect: str) -> FromClause:
    # Driven from the changed executions: usage.execution_id holds the id as text.
    return st.usage.join(_we, st.usage.c.execution_id == cast(_we.c.id, Text))


def _pages_of_changed_files(_dialect: str) -> FromClause:
    return st.page_usage.join(_wfe, st.page_usage.c.run_id == cast(_wfe.c.id, Text))


def _pages_of_executions(dialect: str) -> FromClause:
    return _pages_of_changed_files(dialect).join(_we, _we.c.id == _wfe.c.workflow_execution_id)


SCANS: tuple[Scan, ...] = (
    *(_direct(table) for table in sorted(change_columns())),
    Scan(
        "failed_file_pages",
        "page_usage",
        _pages_of_files,
        lambda: _wfe.c.created_at,
        lambda: [_wfe.c.status == "ERROR"],
    ),
    Scan("execution_files", "workflow_execution", _files_of_executions, lambda: _wfe.c.created_at),
    # The breakdowns: what follows an execution or a file without changing with it.
    Scan(
        "execution_usage",
        "workflow_execution",
        _usage_of_executions,
        lambda: st.usage.c.created_at,
        lambda: [st.usage.c.usage_type == "llm"],
    ),
    Scan(
        "execution_pages",
        "workflow_execution",
        _pages_of_executions,
        lambda: st.page_usage.c.created_at,
    ),
    Scan(
        "file_pages",
        "workflow_file_execution",
        _pages_of_changed_files,
        lambda: st.page_usage.c.created_at,
    ),
)


@dataclass(frozen=True)
class Attribution:
    """A source table whose rows attribute events: which columns, and the event hours that
    follow a row (its executions, and their files)."""

    table: str
    columns: tuple[str, ...]
    execution_column: str  # workflow_execution's column referencing the row

    def source(self) -> Any:
        return st.SOURCE_TABLES[self.table]

    def dependent_hours(self, ids: list[str], dialect: str) -> list[Select[Any]]:
        link = _we.c[self.execution_column].in_(ids)
        executions = select(bucket_expr(_we.c.created_at, Granularity.HOUR, dialect)).where(link)
        files = (
            select(bucket_expr(_wfe.c.created_at, Granularity.HOUR, dialect))
            .select_from(_files_of_executions(dialect))
            .where(link)
        )
        return [executions.distinct(), files.distinct()]


ATTRIBUTIONS = (
    Attribution("workflow", ("organization_id",), "workflow_id"),
    Attribution("pipeline", ("organization_id", "pipeline_type"), "pipeline_id"),
    Attribution("api_deployment", ("organization_id",), "pipeline_id"),
)


def _change_time_sum(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    return func.extract("epoch", column) if dialect == "postgresql" else func.julianday(column)


def _fingerprint_query(
    scan: Scan, since: datetime | None, upcoming: datetime, dialect: str
) -> Select[Any]:
    """Per hour, the fingerprint of the rows changed after ``since`` and, in the same pass, of
    those changed after ``upcoming`` (>= since: the next tick's threshold)."""
    changed = scan.change_column()
    hour = bucket_expr(scan.event_time(), Granularity.HOUR, dialect)
    later = changed > upcoming
    conditions = scan.where()
    if since is not None:
        conditions.append(changed > since)
    return (
        select(
            hour.label("hour"),
            func.count().label("n"),
            func.max(changed).label("latest"),
            func.sum(_change_time_sum(changed, dialect)).label("total"),
            func.sum(case((later, 1), else_=0)).label("next_n"),
            func.max(case((later, changed))).label("next_latest"),
            func.sum(case((later, _change_time_sum(changed, dialect)))).label("next_total"),
        )
        .select_from(scan.joined(dialect))
        .where(*conditions)
        .group_by(hour)
    )


def _fingerprint(n: Any, latest: Any, total: Any) -> list[str]:
    return [str(n), str(as_utc_or_none(latest)), str(total)]


def fingerprints(
    conn: Connection, scan: Scan, since: datetime | None, upcoming: datetime
) -> tuple[Fingerprints, Fingerprints]:
    """The fingerprints of the rows changed after ``since`` and after ``upcoming``."""
    now: Fingerprints = {}
    later: Fingerprints = {}
    for row in conn.execute(_fingerprint_query(scan, since, upcoming, conn.dialect.name)):
        hour = parse_bucket(row.hour, Granularity.HOUR).isoformat()
        now[hour] = _fingerprint(row.n, row.latest, row.total)
        if row.next_n:
            later[hour] = _fingerprint(row.next_n, row.next_latest, row.next_total)
    return now, later


def source_now(conn: Connection) -> datetime | None:
    """The source snapshot's clock (PostgreSQL's transaction time); None on SQLite, whose
    clock is the aggregator's own."""
    if conn.dialect.name != "postgresql":
        return None
    return as_utc_or_none(conn.exec_driver_sql("SELECT now()").scalar())


@dataclass
class ChangeScan:
    dirty: set[datetime]
    state: dict[str, Any]  # aggregator_state values to store with the tick


def scan_changes(
    rollup: Connection,
    source: Connection,
    stored: dict[str, Any],
    watermark: datetime,
    overlap: timedelta,
) -> ChangeScan:
    """The hours changed since the previous tick, and the state the next tick starts from.

    ``watermark`` is this snapshot's clock: the next tick reads from ``watermark - overlap``.
    ``rollup`` holds the write lock (it keeps the attribution snapshot)."""
    previous = state.previous_watermark(stored)
    since = None if previous is None else previous - overlap
    upcoming = watermark - overlap
    if since is not None and upcoming < since:  # the clock went back: widen, fingerprint anew
        since = upcoming
    dirty: set[datetime] = set()
    values: dict[str, Any] = {state.WATERMARK: watermark.isoformat()}
    for scan in SCANS:
        current, later = fingerprints(source, scan, since, upcoming)
        before = stored.get(state.fingerprint_key(scan.name))
        old: Fingerprints = {}  # none yet, or taken at another threshold: all seen is new
        if before is not None and before["since"] == _iso(since):
            old = before["hours"]
        dirty |= {
            datetime.fromisoformat(hour)
            for hour in current.keys() | old.keys()
            if current.get(hour) != old.get(hour)
        }
        values[state.fingerprint_key(scan.name)] = {"since": upcoming.isoformat(), "hours": later}
    for attribution in ATTRIBUTIONS:
        dirty |= _attribution_changes(rollup, source, attribution, since)
    return ChangeScan(dirty, values)


def _attribution_changes(
    rollup: Connection, source: Connection, attribution: Attribution, since: datetime | None
) -> set[datetime]:
    """Hours of the events whose attributing row changed its attribution after ``since``; the
    snapshot is brought up to date. The first snapshot of a table dirties nothing (the rollups
    were built with the attribution they have)."""
    table = attribution.source()
    query = select(table.c.id, *(table.c[c] for c in attribution.columns))
    if since is not None:
        query = query.where(table.c.modified_at > since)
    seen = {str(row[0]): json.dumps([str(v) for v in row[1:]]) for row in source.execute(query)}
    if not seen:
        return set()
    snapshot = source_attribution.c
    known = select(snapshot.row_id, snapshot.attribution).where(
        snapshot.source_table == attribution.table
    )
    if since is not None:  # else: every row was seen, read the whole snapshot
        known = known.where(snapshot.row_id.in_(sorted(seen)))
    stored: dict[str, str] = {row_id: value for row_id, value in rollup.execute(known)}
    changed = {row_id: value for row_id, value in seen.items() if stored.get(row_id) != value}
    if not changed:
        return set()
    first = not stored and not _has_snapshot(rollup, attribution.table)
    upsert_rows(
        rollup,
        source_attribution,
        [
            {"source_table": attribution.table, "row_id": row_id, "attribution": value}
            for row_id, value in changed.items()
        ],
        ["source_table", "row_id"],
        ["attribution"],
    )
    if first:
        return set()
    return _hours(source, attribution.dependent_hours(sorted(changed), source.dialect.name))


def _has_snapshot(rollup: Connection, table: str) -> bool:
    snapshot = source_attribution.c
    query = select(snapshot.row_id).where(snapshot.source_table == table).limit(1)
    return rollup.execute(query).first() is not None


def _hours(source: Connection, queries: Iterable[Select[Any]]) -> set[datetime]:
    hours: set[datetime] = set()
    for query in queries:
        for (raw,) in source.execute(query):
            hours.add(parse_bucket(raw, Granularity.HOUR))  # type: ignore[arg-type]
    return hours


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
