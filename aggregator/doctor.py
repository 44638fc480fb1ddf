"""`doctor`: connectivity, source schema, recommended source indexes, aggregator lag, and the
row counts of the rollup tiers (organization rows and breakdowns), the pushed events kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dashboard_metrics.aggregator.source_reads import is_read
from dashboard_metrics.core import migrate, state
from dashboard_metrics.core.catalogue import pushed_metrics
from dashboard_metrics.core.db import (
    DatabaseError,
    check_connect,
    first_line,
    missing_files,
    rollup_engine,
    source_engine,
)
from dashboard_metrics.core.schema import BREAKDOWN, ORGANIZATION, pushed_events
from dashboard_metrics.core.setting_types import mask_url
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.source_tables import RECOMMENDED_INDEXES, SOURCE_TABLES
from dashboard_metrics.core.timeutil import utcnow


@dataclass
class Finding:
    level: str  # ok | warn | fail
    check: str
    detail: str


def _type_family(type_name: str) -> str:
    name = type_name.lower()
    for family, needles in (
        ("time", ("timestamp", "datetime")),
        ("uuid", ("uuid", "char(36)", "varchar(36)")),
        ("int", ("int",)),
        ("float", ("float", "double", "real", "numeric")),
        ("bool", ("bool",)),
        ("json", ("json",)),  # json and jsonb (Unstract's columns are jsonb)
        ("text", ("char", "text", "string")),  # varchar(n), text, ...
    ):
        if any(needle in name for needle in needles):
            return family
    return name


def check_source_schema(engine: Engine, schema: str | None) -> list[Finding]:
    findings: list[Finding] = []
    with engine.connect() as conn:
        inspector = inspect(conn)
        present = set(inspector.get_table_names(schema=schema))
        for name, table in SOURCE_TABLES.items():
            if name not in present:
                findings.append(Finding("fail", f"table {name}", "missing"))
                continue
            columns = {c["name"]: c for c in inspector.get_columns(name, schema=schema)}
            problems: list[str] = []
            unread: list[str] = []
            for column in table.columns:
                found = columns.get(column.name)
                if found is None:
                    problem = f"missing column {column.name}"
                else:
                    want = _type_family(str(column.type.compile(dialect=conn.dialect)))
                    have = _type_family(str(found["type"]))
                    if want == have or (want == "uuid" and have == "text"):
                        continue
                    problem = f"{column.name} is {found['type']}, expected {want}"
                # Only what the metrics and endpoints read can break them.
                (problems if is_read(name, column.name) else unread).append(problem)
            if problems:
                findings.append(Finding("fail", f"table {name}", "; ".join(problems)))
            else:
                findings.append(Finding("ok", f"table {name}", "columns and types match"))
            if unread:
                findings.append(
                    Finding(
                        "warn",
                        f"table {name}",
                        "; ".join(unread) + " (never read by the metrics or the API)",
                    )
                )
            indexed = [
                tuple(ix["column_names"]) for ix in inspector.get_indexes(name, schema=schema)
            ]
            for columns_wanted in RECOMMENDED_INDEXES.get(name, []):
                if not any(ix[: len(columns_wanted)] == columns_wanted for ix in indexed):
                    cols = ", ".join(columns_wanted)
                    findings.append(
                        Finding(
                            "warn",
                            f"index {name}({cols})",
                            "missing: "
                            + create_index(conn.dialect.name, schema, name, columns_wanted),
                        )
                    )
    return findings


def create_index(dialect: str, schema: str | None, table: str, columns: tuple[str, ...]) -> str:
    """The statement that adds a recommended index, ready to paste (schema included)."""
    name = f"{table}_{'_'.join(columns)}_idx"
    target = f"{schema}.{table}" if schema else table
    concurrently = "CONCURRENTLY " if dialect == "postgresql" else ""
    return f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON {target} ({', '.join(columns)});"


def check_lag(engine: Engine, settings: Settings, now: datetime) -> list[Finding]:
    revision = migrate.current_revision(engine)
    if revision is None:
        return [
            Finding("fail", "rollup schema", "not created yet: run `dashboard-metrics migrate`")
        ]
    if revision != migrate.head_revision():
        return [Finding("fail", "rollup schema", "out of date: run `dashboard-metrics migrate`")]
    with engine.connect() as conn:
        last = state.get(conn, state.LAST_TICK)
    if last is None:
        return [Finding("warn", "aggregator", "no tick recorded yet: run `aggregate`")]
    lag = (now - datetime.fromisoformat(last["started_at"])).total_seconds()
    level = "ok" if lag <= 3 * settings.tick_seconds else "warn"
    return [Finding(level, "aggregator lag", f"last tick started {lag:.0f} s ago")]


def check_rows(engine: Engine) -> list[Finding]:
    """Rows per tier: the organization table and its breakdown table beside it. A breakdown
    tier has at least a row wherever its organization tier has one (an event without a value
    for a dimension still has a breakdown row), so none beside some is a warning."""
    findings: list[Finding] = []
    with engine.connect() as conn:
        for org_tier, breakdown_tier in zip(ORGANIZATION.tiers, BREAKDOWN.tiers, strict=True):
            counts = [
                conn.execute(select(func.count()).select_from(tier.table)).scalar_one()
                for tier in (org_tier, breakdown_tier)
            ]
            level = "warn" if counts[0] and not counts[1] else "ok"
            detail = (
                f"{org_tier.table.name} {counts[0]:,}, {breakdown_tier.table.name} {counts[1]:,}"
            )
            if level == "warn":
                detail += " (run `dashboard-metrics backfill` to fill the breakdowns)"
            findings.append(Finding(level, f"{org_tier.name} rows", detail))
    return findings


def check_pushed(engine: Engine, settings: Settings) -> list[Finding]:
    """The pushed metrics declared and the events kept; events of no declared metric (taken
    out of the metrics file) are a warning: nothing folds them any more."""
    declared = {entry.name for entry in pushed_metrics()}
    with engine.connect() as conn:
        by_metric: dict[str, int] = dict(
            conn.execute(
                select(pushed_events.c.metric_name, func.count()).group_by(
                    pushed_events.c.metric_name
                )
            ).all()
        )
    detail = (
        f"{len(declared)} declared ({settings.metrics_file or 'no metrics file'}), "
        f"{sum(by_metric.values()):,} events kept ({settings.events_retention_days} days)"
    )
    findings = [Finding("ok", "pushed metrics", detail)]
    undeclared = sorted(set(by_metric) - declared)
    if undeclared:
        names = ", ".join(undeclared)
        findings.append(Finding("warn", "pushed metrics", f"events of undeclared metrics: {names}"))
    return findings


def gather(settings: Settings, now: Callable[[], datetime] = utcnow) -> list[Finding]:
    missing = missing_files(settings)
    if missing:  # opening it would create an empty database (and reset a leftover -wal)
        return [
            Finding("fail", "database", f"no database at {path} (nothing was created)")
            for path in missing
        ]
    findings: list[Finding] = []
    rollup = rollup_engine(settings, writer=False)
    source = source_engine(settings)
    try:
        for engine, what in ((source, "source"), (rollup, "rollup")):
            try:
                check_connect(engine, what)
                findings.append(Finding("ok", f"{what} database", mask_url(str(engine.url))))
            except DatabaseError as exc:
                findings.append(Finding("fail", f"{what} database", str(exc)))
        if findings[0].level == "ok":
            schema = settings.effective_source_schema
            where = f"schema {schema}" if schema else "the SQLite file (no schemas)"
            findings.append(Finding("ok", "source schema checked", where))
            findings += check_source_schema(source, schema)
        if findings[1].level == "ok":
            lag = check_lag(rollup, settings, now())
            findings += lag
            if lag[0].check != "rollup schema":  # the tables exist as this version has them
                findings += check_rows(rollup)
                findings += check_pushed(rollup, settings)
    except SQLAlchemyError as exc:
        findings.append(Finding("fail", "database", first_line(exc)))
    finally:
        rollup.dispose()
        source.dispose()
    return findings


def run_doctor(settings: Settings) -> int:
    findings = gather(settings)
    for finding in findings:
        print(f"[{finding.level:4}] {finding.check}: {finding.detail}")
    failed = sum(f.level == "fail" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    print(f"{len(findings)} checks: {failed} failed, {warned} warnings")
    return 1 if failed else 0
