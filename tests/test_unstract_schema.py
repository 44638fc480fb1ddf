"""A source schema typed exactly as Unstract's, on PostgreSQL (issue 12, gaps 6 and 7).

Unstract's `workflow.source_settings`, `workflow.destination_settings` and
`workflow_file_execution.fs_metadata` are jsonb; older versions lack
`organization.restrict_connector_creation`; its own `event_metrics_*` tables (another layout)
sit in the same schema, with rows. `doctor` passes, `migrate` and `backfill` succeed and give
the oracle's rollups, and Unstract's tables are untouched. Then every column the metrics and
endpoints do not read (`aggregator/source_reads.py`) is dropped: the rollups and every source
endpoint answer exactly as before, so the list of columns doctor insists on is complete.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import psycopg

from dashboard_metrics.aggregator.source_reads import READ_COLUMNS
from dashboard_metrics.core.source_tables import SOURCE_TABLES
from tests.harness import Harness
from tests.processes import run
from tests.test_api_support import client, seed

UNSTRACT_TIERS = {
    "hourly": '"timestamp" timestamptz',
    "daily": "date date",
    "monthly": "month date",
}
JSONB = [
    ("workflow", "source_settings"),
    ("workflow", "destination_settings"),
    ("workflow_file_execution", "fs_metadata"),
]


def _libpq(h: Harness) -> str:
    return h.settings.rollup_url.replace("+psycopg", "")


def _unstract_tables(h: Harness) -> None:
    """Unstract's own rollups (its 0001_initial layout) with a row each, in schema unstract."""
    with psycopg.connect(_libpq(h), autocommit=True) as conn:
        for tier, period in UNSTRACT_TIERS.items():
            conn.execute(
                f"CREATE TABLE unstract.event_metrics_{tier} (id uuid PRIMARY KEY,"
                " created_at timestamptz NOT NULL, modified_at timestamptz NOT NULL,"
                f" organization_id bigint, {period} NOT NULL, metric_name varchar(64) NOT NULL,"
                " metric_type varchar(16) NOT NULL, metric_value double precision NOT NULL,"
                " metric_count integer NOT NULL, project varchar(64) NOT NULL,"
                " tag varchar(64) NOT NULL)"
            )
            conn.execute(
                f"INSERT INTO unstract.event_metrics_{tier} VALUES (gen_random_uuid(), now(),"
                " now(), 1, '2026-03-01', 'llm_calls', 'counter', 7, 1, 'default', '')"
            )


def _snapshot(h: Harness) -> list[Any]:
    with psycopg.connect(_libpq(h)) as conn:
        rows = [
            conn.execute(f"SELECT * FROM unstract.event_metrics_{tier} ORDER BY id").fetchall()
            for tier in UNSTRACT_TIERS
        ]
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'unstract' ORDER BY 1, 2"
        ).fetchall()
    return [rows, columns]


def _rollups(h: Harness) -> dict[str, Any]:
    now = h.clock()
    since = {
        "hourly": now - timedelta(days=h.settings.hourly_retention_days),
        "daily": (now - timedelta(days=h.settings.daily_retention_days)).date(),
    }
    out = {}
    for tier in ("hourly", "daily", "monthly"):
        rows = h.tier_rows(tier)
        out[tier] = {k: v for k, v in rows.items() if tier not in since or k[1] >= since[tier]}
    return out


def _rebuild(h: Harness) -> None:
    """Take the history over with `backfill` (as an operator would): a from-scratch
    computation over every source row, which fails if it needs a column that is gone."""
    report = h.backfill(days=60)
    assert report is not None


async def _answers(h: Harness, org: str) -> list[Any]:
    base = f"/api/v1/unstract/{org}/metrics/"
    paths = [
        "recent-activity/?limit=50",
        "live-summary/?start_date=2026-03-01T00:00:00.000Z",
        "live-series/?start_date=2026-03-10T00:00:00.000Z&granularity=hour",
        "overview/?start_date=2026-01-01T00:00:00.000Z",
        *(f"workflow-token-usage/?deployment_type={kind}" for kind in ("API", "ETL", "TASK", "WF")),
    ]
    out = []
    async with client(h) as c:
        for path in paths:
            response = await c.get(base + path)
            assert response.status == 200, (path, await response.text())
            out.append(await response.json())
    return out


def _doctor(h: Harness) -> str:
    result = run(h.settings, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[fail]" not in result.stdout
    return result.stdout


async def test_doctor_migrate_and_backfill_on_unstracts_own_schema(pg_h: Harness) -> None:
    h = pg_h
    orgs = seed(h, orgs=2, events=40)
    h.assert_matches_oracle()  # before anything is retyped: the oracle reads every column
    expected = _rollups(h)
    answers = {org.string_id: await _answers(h, org.string_id) for org in orgs}

    with psycopg.connect(_libpq(h), autocommit=True) as conn:
        for table, column in JSONB:
            conn.execute(
                f"ALTER TABLE unstract.{table} ALTER COLUMN {column} TYPE jsonb"
                f" USING {column}::jsonb"
            )
        conn.execute("ALTER TABLE unstract.organization DROP COLUMN restrict_connector_creation")
    _unstract_tables(h)
    before = _snapshot(h)

    report = _doctor(h)
    assert "expected json" not in report
    assert "missing column restrict_connector_creation" in report  # a warning
    assert "[warn] table organization" in report
    migrated = run(h.settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    _rebuild(h)
    assert _same(_rollups(h), expected)
    assert _snapshot(h) == before  # Unstract's tables: same rows, same columns
    for org in orgs:
        assert _same(await _answers(h, org.string_id), answers[org.string_id])

    # Every column nobody reads goes: nothing that doctor only warns about is needed.
    with psycopg.connect(_libpq(h), autocommit=True) as conn:
        for name, table in SOURCE_TABLES.items():
            for column in table.columns:
                if column.name not in READ_COLUMNS[name] and column.name in _columns(conn, name):
                    conn.execute(f'ALTER TABLE unstract.{name} DROP COLUMN "{column.name}" CASCADE')
    report = _doctor(h)
    assert "missing column fs_metadata" in report
    _rebuild(h)
    assert _same(_rollups(h), expected)
    h.aggregator.tick()  # change scans and attribution snapshots read only those columns too
    assert _same(_rollups(h), expected)
    for org in orgs:
        assert _same(await _answers(h, org.string_id), answers[org.string_id])


def _same(a: Any, b: Any) -> bool:
    """Equal, floats up to summation order (a backfill sums in another order than ticks)."""
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _columns(conn: psycopg.Connection[Any], table: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'unstract' AND table_name = %s",
        (table,),
    ).fetchall()
    return {row[0] for row in rows}


def test_every_read_column_is_a_source_column() -> None:
    for name, columns in READ_COLUMNS.items():
        assert columns <= {c.name for c in SOURCE_TABLES[name].columns}, name
    assert set(READ_COLUMNS) == set(SOURCE_TABLES)
