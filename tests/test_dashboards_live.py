"""Every dashboard query and rule expression returns data from the real services.

PromQL: a private Prometheus (1 s scrape and rule evaluation, temp storage, the generated rules)
scrapes a real `dashboard-metrics serve` subprocess over generated data; between scrapes new
source rows arrive and a tick runs, so counters move. SQL: every panel query, macros substituted,
runs against PostgreSQL rollups filled by generate-test-data + migrate + backfill (the CLI), for
ranges that select each tier.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dashboards import checks, generate
from dashboards.promql import JOB
from dashboards.rules import alerts, rule_groups
from tests.conftest import PG_ADMIN

ROOT = Path(__file__).resolve().parents[1]
GENERATED = generate.DEFAULT_OUT
PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(check: Any, what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Stack:
    env: dict[str, str]
    pg_url: str
    orgs: list[str]
    serve: str
    prometheus: str

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "dashboard_metrics.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result.stdout

    def query(self, expr: str) -> list[Any]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = get_json(url)
        assert body["status"] == "success", body
        return body["data"]["result"]  # type: ignore[no-any-return]


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    assert PROMETHEUS, "prometheus is not installed: .ci/run installs Debian's prometheus package"
    tmp = tmp_path_factory.mktemp("live")
    name = f"dm_dash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    pg_url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_METRICS_")},
        "DASHBOARD_METRICS_DATABASE_URL": pg_url.replace("postgresql://", "postgresql+psycopg://"),
        "DASHBOARD_METRICS_DATA_DIR": str(tmp),
        "DASHBOARD_METRICS_PORT": str(port),
        "DASHBOARD_METRICS_LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    stack = Stack(env, pg_url, [], f"http://127.0.0.1:{port}", "")
    try:
        out = stack.cli(
            "generate-test-data", "--orgs", "3", "--days", "100", "--records-per-day", "4"
        )
        stack.orgs = out.split("organizations:")[1].splitlines()[0].strip().split(", ")
        stack.cli("migrate")
        stack.cli("backfill", "--days", "100")
        stack.cli("aggregate", "--once")
        log = (tmp / "serve.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "dashboard_metrics.cli", "serve"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        wait_for(lambda: get_json(f"{stack.serve}/healthz"), "serve")

        prom_port = free_port()
        rules = tmp / "rules.yml"
        shutil.copy(GENERATED / generate.RULES_FILE, rules)
        (tmp / "prometheus.yml").write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(rules)],
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                        }
                    ],
                }
            )
        )
        processes.append(
            subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "prometheus.log").open("wb"),
            )
        )
        stack.prometheus = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: stack.query(f'up{{job="{JOB}"}} == 1'), "the first scrape")
        # Traffic for the HTTP and cache families, then new source rows and a tick between
        # scrapes so that the usage counters move.
        for org in stack.orgs:
            for path in ("summary/", "series/", "overview/"):
                urllib.request.urlopen(
                    f"{stack.serve}/api/v1/unstract/{org}/metrics/{path}", timeout=30
                ).read()
        get_json(f"{stack.serve}/readyz")
        time.sleep(2)
        stack.cli(
            "generate-test-data",
            *("--org-id", stack.orgs[0], "--days", "1", "--records-per-day", "6", "--seed", "7"),
        )
        stack.cli("aggregate", "--once")
        wait_for(
            lambda: stack.query("sum(increase(dashboard_metrics_ticks_total[1m])) > 0"),
            "a scrape after the second tick",
        )
        time.sleep(3)  # a few more scrapes and rule evaluations
        yield stack
    finally:
        for process in reversed(processes):
            _stop(process)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _promql() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name in generate.DASHBOARDS:
        dashboard = json.loads((GENERATED / name).read_text())
        found += [
            (f"{q.dashboard}/{q.panel}/{q.ref_id}", checks.promql_for_test(q.text))
            for q in checks.queries(dashboard)
            if q.kind == "promql"
        ]
    for group in rule_groups()["groups"]:
        found += [(f"rule {r['record']}", r["expr"]) for r in group["rules"] if "record" in r]
        found += [(f"recorded {r['record']}", r["record"]) for r in group["rules"] if "record" in r]
    found += [(f"alert {a.name} signal", a.signal) for a in alerts()]
    return found


def test_every_promql_expression_returns_data(stack: Stack) -> None:
    expressions = _promql()
    assert len(expressions) > 100
    empty = [f"{where}: {expr}" for where, expr in expressions if not stack.query(expr)]
    assert not empty, "no data for:\n" + "\n".join(empty)


def test_usage_counters_moved_between_scrapes(stack: Stack) -> None:
    moved = stack.query('sum(increase(unstract_prompt_executions_total{organization=~".*"}[1m]))')
    assert float(moved[0]["value"][1]) > 0


def test_organization_variable_has_values(stack: Stack) -> None:
    dashboard = json.loads((GENERATED / "usage-overview.json").read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "organization")
    selector = variable["definition"].removeprefix("label_values(").rsplit(", ", 1)[0]
    url = f"{stack.prometheus}/api/v1/label/organization/values?" + urllib.parse.urlencode(
        {"match[]": selector}
    )
    assert set(stack.orgs) <= set(get_json(url)["data"])


RANGES = {"hourly": timedelta(days=3), "daily": timedelta(days=30), "monthly": timedelta(days=365)}


@pytest.mark.parametrize("tier", sorted(RANGES))
def test_every_sql_panel_returns_rows(stack: Stack, tier: str) -> None:
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - RANGES[tier]
    dashboard = json.loads((GENERATED / "usage-history.json").read_text())
    queries = [q for q in checks.queries(dashboard) if q.kind == "sql"]
    assert len(queries) >= 10
    iso = "%Y-%m-%dT%H:%M:%SZ"
    empty = []
    with psycopg.connect(stack.pg_url) as conn:
        for query in queries:
            sql = checks.sql_for_test(
                query.text, start.strftime(iso), end.strftime(iso), stack.orgs[0]
            )
            if not conn.execute(sql).fetchall():  # type: ignore[call-overload]
                empty.append(f"{query.panel}: {sql}")
        variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "organization")
        values = {row[0] for row in conn.execute(variable["query"]).fetchall()}
    assert not empty, "no rows for:\n" + "\n\n".join(empty)
    assert set(stack.orgs) <= values


def test_series_panels_pick_the_tier_by_range(stack: Stack) -> None:
    """Hourly points for 3 days, daily for 30, monthly for a year (as the API chooses)."""
    dashboard = json.loads((GENERATED / "usage-history.json").read_text())
    query = next(
        q
        for q in checks.queries(dashboard)
        if q.text.startswith("SELECT time") and "metric_name = 'prompt_executions'" in q.text
    )
    end = datetime.now(UTC).replace(microsecond=0)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    with psycopg.connect(stack.pg_url) as conn:
        for tier, span in RANGES.items():
            sql = checks.sql_for_test(
                query.text, (end - span).strftime(iso), end.strftime(iso), stack.orgs[0]
            )
            rows = conn.execute(sql).fetchall()  # type: ignore[call-overload]
            times = [row[0].astimezone(UTC) for row in rows]
            assert len(times) > 1, tier
            assert all(t.minute == 0 and t.second == 0 for t in times)
            if tier == "hourly":
                assert any(t.hour != 0 for t in times)
            elif tier == "daily":
                assert all(t.hour == 0 for t in times) and any(t.day != 1 for t in times)
            else:
                assert all(t.hour == 0 and t.day == 1 for t in times)
