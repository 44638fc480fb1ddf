from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dashboard_metrics.core.settings import Settings
from tests.harness import FakeClock, Harness, utc

PG_ADMIN = os.environ.get(
    "DASHBOARD_METRICS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DIALECTS = [
    d
    for d in os.environ.get("DASHBOARD_METRICS_TEST_DIALECTS", "sqlite,postgresql").split(",")
    if d
]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A private PostgreSQL database for this test session (dropped afterwards)."""
    name = f"dm_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset_pg(url: str) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS unstract CASCADE")
        # The rollup schema (DASHBOARD_METRICS_ROLLUP_SCHEMA's default): each test starts
        # unmigrated, as on SQLite's fresh file.
        conn.execute("DROP SCHEMA IF EXISTS dashboard_metrics CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS dashboard_metrics CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=DIALECTS)
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'dm.db'}")
    url = request.getfixturevalue("pg_database")
    reset_pg(url)
    return Settings(data_dir=tmp_path, database_url=url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2026, 3, 15, 12, 30))


@pytest.fixture
def h(db_settings: Settings, clock: FakeClock) -> Iterator[Harness]:
    harness = Harness(db_settings, clock)
    yield harness
    harness.dispose()


@pytest.fixture
def pg_h(pg_database: str, tmp_path: Path, clock: FakeClock) -> Iterator[Harness]:
    """A harness on PostgreSQL only, for tests that need a server (e.g. a proxy in front)."""
    reset_pg(pg_database)
    harness = Harness(Settings(data_dir=tmp_path, database_url=pg_database), clock)
    yield harness
    harness.dispose()


EXAMPLE_METRICS_FILE = Path(__file__).resolve().parent.parent / "examples" / "hitl-metrics.yaml"


@pytest.fixture
def pushed_catalogue() -> Iterator[str]:
    """The example metrics file's pushed metrics installed in the catalogue for one test (the
    path returned); the built-in catalogue is restored afterwards."""
    from dashboard_metrics.core import catalogue, pushed_metrics

    pushed_metrics.install(str(EXAMPLE_METRICS_FILE))
    yield str(EXAMPLE_METRICS_FILE)
    catalogue.install_pushed(())
