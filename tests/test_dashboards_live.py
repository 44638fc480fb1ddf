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
import re
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

from dashboard_metrics.dashboards import checks, generate
from dashboard_metrics.dashboards.promql import JOB
from dashboard_metrics.dashboards.rules import alerts, rule_groups
from tests.conftest import PG_ADMIN

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / generate.DEFAULT_OUT
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
    serve: str  # replica A: the one the JSON API traffic goes to
    prometheus: str  # scrapes both serve replicas
    single: str = ""  # scrapes replica A only

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "dashboard_metrics", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result.stdout

    def query(self, expr: str, server: str = "", at: float | None = None) -> list[Any]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        url = f"{server or self.prometheus}/api/v1/query?" + urllib.parse.urlencode(params)
        body = get_json(url)
        assert body["status"] == "success", body
        return body["data"]["result"]  # type: ignore[no-any-return]

    def scalar(self, expr: str, server: str = "") -> float:
        (sample,) = self.query(expr, server)
        return float(sample["value"][1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _prometheus(tmp: Path, name: str, targets: list[str], rules: Path) -> tuple[list[str], str]:
    """Command line and URL of a private Prometheus scraping `targets` every second."""
    port = free_port()
    config = tmp / f"{name}.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "metrics_path": "/metrics",
                        "static_configs": [{"targets": targets}],
                    }
                ],
            }
        )
    )
    command = [
        str(PROMETHEUS),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / f'{name}-tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return command, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two `serve` replicas over one rollup database; one Prometheus scrapes both, another
    only the first. Both load the same rule file (so their rule evaluations line up)."""
    assert PROMETHEUS, "prometheus is not installed: .ci/run installs Debian's prometheus package"
    tmp = tmp_path_factory.mktemp("live")
    name = f"dm_dash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    pg_url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    ports = [free_port(), free_port()]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_METRICS_")},
        "DASHBOARD_METRICS_DATABASE_URL": pg_url.replace("postgresql://", "postgresql+psycopg://"),
        "DASHBOARD_METRICS_DATA_DIR": str(tmp),
        "DASHBOARD_METRICS_LOG_LEVEL": "WARNING",
        # The breakdown panels read these labels (and the workflow/deployment info families).
        "DASHBOARD_METRICS_METRICS_DIMENSIONS": "model,workflow,deployment",
    }
    processes: list[subprocess.Popen[bytes]] = []
    stack = Stack(env, pg_url, [], f"http://127.0.0.1:{ports[0]}", "")
    try:
        out = stack.cli(
            "generate-test-data", "--orgs", "3", "--days", "100", "--records-per-day", "4"
        )
        stack.orgs = out.split("organizations:")[1].splitlines()[0].strip().split(", ")
        stack.cli("migrate")
        stack.cli("backfill", "--days", "100")
        stack.cli("aggregate", "--once")
        for i, port in enumerate(ports):
            log = (tmp / f"serve-{i}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "dashboard_metrics", "serve"],
                    cwd=ROOT,
                    env={**env, "DASHBOARD_METRICS_PORT": str(port)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for port in ports:
            wait_for(lambda p=port: get_json(f"http://127.0.0.1:{p}/healthz"), "serve")

        rules = tmp / "rules.yml"
        shutil.copy(GENERATED / generate.RULES_FILE, rules)
        targets = [f"127.0.0.1:{port}" for port in ports]
        both, stack.prometheus = _prometheus(tmp, "both", targets, rules)
        single, stack.single = _prometheus(tmp, "single", targets[:1], rules)
        for command, label in ((both, "both"), (single, "single")):
            processes.append(
                subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp / f"prometheus-{label}.log").open("wb"),
                )
            )
        for server, count in ((stack.prometheus, 2), (stack.single, 1)):
            wait_for(
                lambda s=server, n=count: stack.query(f'count(up{{job="{JOB}"}} == 1) == {n}', s),
                "the first scrape of every replica",
            )
        # Traffic for the HTTP and cache families, then new source rows and a tick between
        # scrapes so that the usage counters move.
        for org in stack.orgs:
            for path in ("summary/", "series/", "overview/"):
                urllib.request.urlopen(
                    f"{stack.serve}/api/v1/unstract/{org}/metrics/{path}", timeout=30
                ).read()
        get_json(f"{stack.serve}/readyz")
        ticks = stack.scalar("max(dashboard_metrics_ticks_total)")
        time.sleep(2)
        stack.cli(
            "generate-test-data",
            *("--org-id", stack.orgs[0], "--days", "1", "--records-per-day", "6", "--seed", "7"),
        )
        _repeat_recent_rows(pg_url)
        stack.cli("aggregate", "--once")
        # Steady state: every replica, in both Prometheus servers, has been scraped after the
        # tick (the aggregator's counters and the usage totals are read in one snapshot).
        for server, count in ((stack.prometheus, 2), (stack.single, 1)):
            wait_for(
                lambda s=server, n=count: stack.query(
                    f"count(dashboard_metrics_ticks_total > {ticks}) == {n}", s
                ),
                "a scrape of every replica after the second tick",
            )
        time.sleep(3)  # a few more scrapes and rule evaluations
        yield stack
    finally:
        for process in reversed(processes):
            _stop(process)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Source tables whose recent rows are repeated (new ids, now), with whether they have modified_at.
REPEATED = (
    ("workflow_execution", True),
    ("workflow_file_execution", True),
    ("usage", True),
    ("page_usage", False),
)


def _repeat_recent_rows(pg_url: str) -> None:
    """New events for series /metrics already shows: the same organizations, models, workflows
    and deployments (generate-test-data makes new workflows and deployments, so new series)."""
    with psycopg.connect(pg_url) as conn:
        for table, modified in REPEATED:
            stamps = "created_at = now()" + (", modified_at = now()" if modified else "")
            conn.execute(
                f"CREATE TEMP TABLE repeated AS SELECT * FROM unstract.{table} "
                "ORDER BY created_at DESC LIMIT 30"
            )
            conn.execute(f"UPDATE repeated SET id = gen_random_uuid(), {stamps}")
            conn.execute(f"INSERT INTO unstract.{table} SELECT * FROM repeated")
            conn.execute("DROP TABLE repeated")


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


# Traffic of each serve process (HTTP requests, cache lookups), summed over replicas, and the
# per-target `up` series: they differ between one and two replicas by nature. Everything else,
# the per-replica state included (min up, min database_up, max build_info), must agree.
PER_REPLICA = re.compile(r'dashboard_metrics_(?:http_|cache_)|^up\{job="[^"]+"\}$')
# Computed by serve at scrape time: equal up to the scrapes' few milliseconds apart.
SCRAPE_TIME = re.compile(r"dashboard_metrics_rollup_lag_seconds")


def _answer(result: list[Any]) -> list[tuple[str, str]]:
    return sorted((json.dumps(r["metric"], sort_keys=True), r["value"][1]) for r in result)


def test_one_or_two_replicas_give_the_same_answers(stack: Stack) -> None:
    """Every usage and aggregator expression and rule, evaluated at one instant by a Prometheus
    scraping one replica and by one scraping two, gives exactly the same series and values."""
    at = time.time() - 1.5  # both servers have evaluated their rules for this instant
    compared, nonzero, different = 0, 0, []
    for where, expr in _promql():
        if PER_REPLICA.search(expr):
            continue
        one = stack.query(expr, stack.single, at)
        two = stack.query(expr, stack.prometheus, at)
        assert one and two, f"{where}: no data: {expr}"
        if SCRAPE_TIME.search(expr):
            assert [m for m, _ in _answer(one)] == [m for m, _ in _answer(two)], where
            assert abs(float(one[0]["value"][1]) - float(two[0]["value"][1])) < 5, where
            continue
        compared += 1
        if _answer(one) != _answer(two):
            different.append(f"{where}: {expr}\n  1 replica:  {one}\n  2 replicas: {two}")
        nonzero += any(float(r["value"][1]) not in (0.0,) and r["value"][1] != "NaN" for r in one)
    assert not different, "1 vs 2 replicas differ:\n" + "\n".join(different)
    assert compared > 100 and nonzero > 50, (compared, nonzero)
    # The comparison can tell: summed over targets, the raw families double with two replicas.
    for naive in ("sum(unstract_llm_calls_total)", "sum(dashboard_metrics_ticks_total)"):
        assert stack.scalar(naive, stack.prometheus) == 2 * stack.scalar(naive, stack.single)


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
        listing = checks.sql_for_test(variable["query"], "", "", "")
        values = {row[0] for row in conn.execute(listing).fetchall()}  # type: ignore[call-overload]
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


def test_breakdown_tables_carry_the_names(stack: Stack) -> None:
    """The workflow and deployment tables join the names from the info families; every id with
    an info series has its name."""
    dashboard = json.loads((GENERATED / "usage-overview.json").read_text())
    for title, dimension, label in (
        ("By workflow", "workflow", "workflow_name"),
        ("By deployment", "deployment", "deployment_name"),
    ):
        info = {
            (r["metric"]["organization"], r["metric"][dimension]): r["metric"][label]
            for r in stack.query(f"unstract_{dimension}_info")
        }
        assert info, dimension
        for query in (q for q in checks.queries(dashboard) if q.panel == title):
            result = stack.query(checks.promql_for_test(query.text))
            for series in result:
                labels = series["metric"]
                key = (labels["organization"], labels.get(dimension, ""))
                assert labels.get(label) == info.get(key), (title, labels)
            assert any(label in r["metric"] for r in result), title
