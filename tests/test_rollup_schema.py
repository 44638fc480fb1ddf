"""On PostgreSQL every table we own lives in DASHBOARD_METRICS_ROLLUP_SCHEMA: beside an Unstract
database that has event_metrics_* tables of its own (another layout, in its schema), migrate and
backfill succeed and the source schema is left exactly as it was."""

from __future__ import annotations

import psycopg

from dashboard_metrics.aggregator.testdata import create_source_tables
from dashboard_metrics.core.db import source_engine
from dashboard_metrics.core.settings import Settings
from tests.conftest import reset_pg
from tests.processes import run

UNSTRACT_TABLE = """
CREATE TABLE unstract.event_metrics_hourly (
    id uuid PRIMARY KEY, organization_id varchar(36), "timestamp" timestamptz,
    metric_name varchar(64), metric_type varchar(20), metric_value double precision,
    metric_count integer, labels jsonb, project varchar(64), tag varchar(64)
)"""


def _tables(url: str, schema: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT table_name, md5(string_agg(column_name || data_type, ',' ORDER BY column_name))"
            " FROM information_schema.columns WHERE table_schema = %s GROUP BY 1 ORDER BY 1",
            (schema,),
        ).fetchall()


def test_rollups_live_in_their_own_schema_beside_unstracts_tables(pg_database: str) -> None:
    reset_pg(pg_database)
    settings = Settings(database_url=pg_database)
    engine = source_engine(settings)
    create_source_tables(engine, "unstract")
    engine.dispose()
    libpq = pg_database.replace("+psycopg", "")
    with psycopg.connect(libpq) as conn:
        conn.execute(UNSTRACT_TABLE)
        conn.execute(
            "INSERT INTO unstract.event_metrics_hourly VALUES "
            "(gen_random_uuid(), 'org', now(), 'llm_calls', 'counter', 3, 1, '{}', 'd', '')"
        )
    before = _tables(libpq, "unstract")
    for command in (
        ("migrate",),
        ("generate-test-data", "--orgs", "1", "--days", "2"),
        ("backfill", "--days", "3"),
    ):
        done = run(settings, *command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert _tables(libpq, "unstract") == before  # nothing created or altered there
    with psycopg.connect(libpq) as conn:
        assert conn.execute(
            "SELECT metric_value FROM unstract.event_metrics_hourly"
        ).fetchall() == [(3.0,)]
        ours = conn.execute(
            "SELECT count(*) FROM dashboard_metrics.event_metrics_hourly"
        ).fetchone()
        version = conn.execute(
            "SELECT to_regclass('dashboard_metrics.dashboard_metrics_alembic_version')"
        ).fetchone()
    assert ours is not None and ours[0] > 0
    assert version is not None and version[0] is not None


def test_a_named_rollup_schema_is_created_and_used(pg_database: str) -> None:
    reset_pg(pg_database)
    settings = Settings(database_url=pg_database)
    env = {"DASHBOARD_METRICS_ROLLUP_SCHEMA": "metrics_rollups"}
    libpq = pg_database.replace("+psycopg", "")
    try:
        assert run(settings, "migrate", **env).returncode == 0
        assert "aggregator_state" in {t for t, _ in _tables(libpq, "metrics_rollups")}
        bad = run(settings, "migrate", **{"DASHBOARD_METRICS_ROLLUP_SCHEMA": "x; drop"})
        assert bad.returncode != 0 and "ROLLUP_SCHEMA" in bad.stderr
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS metrics_rollups CASCADE")
