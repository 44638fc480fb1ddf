"""Data set-up for the aggregator benchmarks: template databases generated once, cloned per run.

Every database is named ``bench_agg_*`` on the local PostgreSQL. A template holds the generated
Unstract source tables (schema ``unstract``), the migrated (empty) rollup schema, and the implicit
foreign-key indexes Django creates on a real Unstract database (so the anchor baseline's per-org
queries get the indexes they would have in production). Cloning with ``CREATE DATABASE ...
TEMPLATE`` takes seconds; generating takes minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

ADMIN_URL = os.environ.get("BENCH_AGG_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
SOURCE_TABLES = (
    "usage",
    "page_usage",
    "workflow_execution",
    "workflow_file_execution",
    "workflow",
    "pipeline",
    "api_deployment",
    "organization",
)
# Django's implicit ForeignKey indexes in Unstract (reference section 1); generate-test-data
# creates only the indexes our own reads recommend.
FK_INDEXES = (
    ("usage", "organization_id"),
    ("page_usage", "organization_id"),
    ("workflow", "organization_id"),
    ("pipeline", "organization_id"),
    ("api_deployment", "organization_id"),
    ("workflow_execution", "workflow_id"),
    ("workflow_file_execution", "workflow_execution_id"),
)


def sqlalchemy_url(database: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


def libpq_url(database: str) -> str:
    """Plain psycopg connections; unqualified names resolve to the rollup schema (the anchor
    baseline writes its rollup tables there too), source tables are qualified (unstract.)."""
    path = "options=-csearch_path%3Ddashboard_metrics%2Cpublic"
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{database}?{path}"


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def exists(database: str) -> bool:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
    return row is not None


def _check_name(database: str) -> None:
    if not database.startswith("bench_agg_") or not database.replace("_", "").isalnum():
        raise ValueError(f"benchmark databases are named bench_agg_*: {database!r}")


def drop(database: str) -> None:
    _check_name(database)
    _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def clone(template: str, database: str) -> None:
    """A fresh copy of ``template`` (its rollup tables are empty: nothing ran on it)."""
    _check_name(database)
    drop(database)
    _admin(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')


def cli(database: str, *args: str) -> None:
    env = dict(os.environ, DASHBOARD_METRICS_DATABASE_URL=sqlalchemy_url(database))
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    subprocess.run(
        ["uv", "run", "dashboard-metrics", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,  # the organization list of 200 ids
    )


def _migrated(database: str) -> bool:
    with psycopg.connect(libpq_url(database)) as conn:
        version = "dashboard_metrics.dashboard_metrics_alembic_version"
        row = conn.execute("SELECT to_regclass(%s)", (version,)).fetchone()
    return row is not None and row[0] is not None


def prepare(database: str) -> None:
    """Migrate the rollup schema, add the FK indexes and analyse (idempotent)."""
    cli(database, "migrate")
    with psycopg.connect(libpq_url(database), autocommit=True) as conn:
        for table, column in FK_INDEXES:
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS "bench_fk_{table}_{column}" '
                f'ON unstract."{table}" ("{column}")'
            )
        conn.execute("VACUUM ANALYZE")


def create_template(database: str, *, orgs: int, days: int, records_per_day: int) -> None:
    """Generate the source data with the CLI and prepare it (once; reused when present)."""
    _check_name(database)
    if exists(database) and _migrated(database):
        print(f"reusing {database}", file=sys.stderr)
        return
    if not exists(database):
        _admin(f'CREATE DATABASE "{database}"')
        try:
            cli(
                database,
                "generate-test-data",
                *("--orgs", str(orgs), "--days", str(days)),
                *("--records-per-day", str(records_per_day), "--seed", "1"),
            )
        except BaseException:
            drop(database)
            raise
    prepare(database)


def counts(database: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with psycopg.connect(libpq_url(database)) as conn:
        for table in SOURCE_TABLES:
            row = conn.execute(f'SELECT count(*) FROM unstract."{table}"').fetchone()
            out[table] = int(row[0]) if row else 0
    return out


def reset_rollups(database: str) -> None:
    """Empty the rollup tables and the aggregator's state (a never-aggregated database)."""
    with psycopg.connect(libpq_url(database), autocommit=True) as conn:
        conn.execute(
            "TRUNCATE event_metrics_hourly, event_metrics_daily, event_metrics_monthly, "
            "event_metrics_breakdown_hourly, event_metrics_breakdown_daily, "
            "event_metrics_breakdown_monthly, aggregator_state, metric_totals, "
            "metric_breakdown_totals, source_attribution"
        )


def bench_databases() -> list[str]:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_agg\\_%'"
        ).fetchall()
    return [row[0] for row in rows]
