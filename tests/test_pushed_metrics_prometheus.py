"""Pushed metrics end to end: a real Prometheus scrapes a real `dashboard-metrics serve` started
with the example metrics file, loads the rules generated with it, and every PromQL query of the
generated dashboards that names a pushed metric returns data, with the right values.

The events are stored as the endpoint stores them and folded by a tick
(tests/test_pushed_metrics_output.py's `seed`), once before the first scrape and once more
between scrapes, so the counters move.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dashboard_metrics.core import catalogue, pushed_metrics
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.dashboards import checks, generate
from dashboard_metrics.dashboards.promql import JOB, value_series
from dashboard_metrics.dashboards.rules import hourly_rule
from tests.conftest import EXAMPLE_METRICS_FILE
from tests.harness import FakeClock, Harness, Org, utc
from tests.test_dashboards_live import (
    PROMETHEUS,
    ROOT,
    _prometheus,
    _stop,
    free_port,
    get_json,
    wait_for,
)
from tests.test_dashboards_live import Stack as _Stack
from tests.test_metrics_helpers import NS
from tests.test_pushed_metrics_output import Pushed, seed


@dataclass
class Live:
    prom: _Stack  # query helpers against the Prometheus server
    h: Harness
    a: Org
    b: Org
    files: dict[str, str]  # the generation with the metrics file
    events: list[Pushed] = field(default_factory=list)


def first_batch(a: Org, b: Org) -> list[Pushed]:
    march = utc(2026, 3, 15, 9, 0)
    return [
        Pushed(a.string_id, "hitl_reviews", march, 2.0, a.workflow_id),
        Pushed(b.string_id, "hitl_reviews", march, 1.0, b.workflow_id),
        Pushed(a.string_id, "hitl_completions", march, 1.0, a.workflow_id),
        Pushed(b.string_id, "hitl_completions", march, 1.0, b.workflow_id),
        Pushed(a.string_id, "hitl_review_seconds", march, 40.0, a.workflow_id),
        Pushed(b.string_id, "hitl_review_seconds", march, 700.0, b.workflow_id),
    ]


def second_batch(a: Org, b: Org) -> list[Pushed]:
    """New events in the series the first batch made (the dashboards count movements)."""
    later = utc(2026, 3, 15, 12, 20)
    return [
        Pushed(a.string_id, "hitl_reviews", later, 3.0, a.workflow_id),
        Pushed(a.string_id, "hitl_reviews", later, 1.0, a.workflow_id),
        Pushed(b.string_id, "hitl_completions", later, 1.0, b.workflow_id),
        Pushed(a.string_id, "hitl_review_seconds", later, 25.0, a.workflow_id),
        Pushed(b.string_id, "hitl_review_seconds", later, 100.0, b.workflow_id),
        Pushed(b.string_id, "hitl_reviews", later, 1.0, b.workflow_id),
    ]


def _serve(env: dict[str, str], tmp: Path) -> subprocess.Popen[bytes]:
    log = (tmp / "serve.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "dashboard_metrics", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    assert PROMETHEUS, "prometheus is not installed: .ci/run installs Debian's prometheus package"
    tmp = tmp_path_factory.mktemp("pushed-live")
    database = f"sqlite:///{tmp / 'dm.db'}"
    processes: list[subprocess.Popen[bytes]] = []
    pushed_metrics.install(str(EXAMPLE_METRICS_FILE))
    h = Harness(Settings(data_dir=tmp, database_url=database), FakeClock(utc(2026, 3, 15, 12, 30)))
    try:
        a, b = h.org(), h.org()
        files = generate.render()
        rules = tmp / generate.RULES_FILE
        rules.write_text(files[generate.RULES_FILE])
        live = Live(_Stack({}, "", [a.string_id, b.string_id], "", ""), h, a, b, files)
        live.events = first_batch(a, b)
        seed(h, live.events)
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_METRICS_")},
            "DASHBOARD_METRICS_DATABASE_URL": database,
            "DASHBOARD_METRICS_DATA_DIR": str(tmp),
            "DASHBOARD_METRICS_LOG_LEVEL": "WARNING",
            "DASHBOARD_METRICS_METRICS_FILE": str(EXAMPLE_METRICS_FILE),
            "DASHBOARD_METRICS_METRICS_DIMENSIONS": "workflow",
            "DASHBOARD_METRICS_PORT": str(port),
        }
        processes.append(_serve(env, tmp))
        wait_for(lambda: get_json(f"http://127.0.0.1:{port}/healthz"), "serve")
        command, live.prom.prometheus = _prometheus(tmp, "pushed", [f"127.0.0.1:{port}"], rules)
        processes.append(
            subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "prometheus.log").open("wb"),
            )
        )
        reviews = f"{NS}_hitl_reviews_total"
        wait_for(lambda: live.prom.query(f"{reviews} > 0"), "the first scrape of the pushed family")
        time.sleep(2)  # a few scrapes of the first values
        h.clock.advance(minutes=5)
        live.events += second_batch(a, b)
        seed(h, live.events)  # the rollups of every event so far, as a second fold leaves them
        wait_for(
            lambda: live.prom.query(f'{reviews}{{organization="{a.string_id}"}} == 6'),
            "a scrape after the second batch",
        )
        time.sleep(3)  # a few more scrapes and rule evaluations
        yield live
    finally:
        for process in reversed(processes):
            _stop(process)
        h.dispose()
        catalogue.install_pushed(())


def _pushed_queries(files: dict[str, str]) -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard query naming a pushed metric's series."""
    series = [value_series(m, NS) for m in catalogue.pushed_metrics()]
    found = []
    for name in generate.DASHBOARDS:
        for q in checks.queries(json.loads(files[name])):
            if q.kind == "promql" and any(s in q.text for s in series):
                found.append(
                    (f"{q.dashboard}/{q.panel}/{q.ref_id}", checks.promql_for_test(q.text))
                )
    return found


def test_every_pushed_promql_query_returns_data(live: Live) -> None:
    queries = _pushed_queries(live.files)
    assert len(queries) >= 4 * len(catalogue.pushed_metrics())
    empty = [f"{where}: {expr}" for where, expr in queries if not live.prom.query(expr)]
    assert not empty, "no data for:\n" + "\n".join(empty)
    for metric in catalogue.pushed_metrics():
        assert live.prom.query(hourly_rule(metric, NS)), metric.name


def _by_org(result: list[Any]) -> dict[str, float]:
    return {r["metric"].get("organization", ""): float(r["value"][1]) for r in result}


def test_the_panels_show_what_moved(live: Live) -> None:
    """Over the range, each organization's movement is what the second batch pushed (the
    sum of the values; a histogram's _sum), in the trends' and the pie charts' queries."""
    second = second_batch(live.a, live.b)
    overview = json.loads(live.files["usage-overview.json"])
    for metric in catalogue.pushed_metrics():
        want: dict[str, float] = {}
        for e in second:
            if e.metric == metric.name:
                want[e.org] = want.get(e.org, 0.0) + e.value
        pie = next(
            q
            for q in checks.queries(overview)
            if q.panel == f"{metric.name}: share by organization"
        )
        got = _by_org(live.prom.query(checks.promql_for_test(pie.text)))
        assert {o: v for o, v in got.items() if v} == want, metric.name


def test_the_workflow_table_names_the_pushed_series(live: Live) -> None:
    overview = json.loads(live.files["usage-overview.json"])
    query = next(
        q
        for q in checks.queries(overview)
        if q.panel == "By workflow" and f"{NS}_hitl_reviews_total" in q.text
    )
    result = live.prom.query(checks.promql_for_test(query.text))
    names = {r["metric"]["workflow"]: r["metric"].get("workflow_name") for r in result}
    assert names == {live.a.workflow_id: f"wf-{live.a.pk}", live.b.workflow_id: f"wf-{live.b.pk}"}


def test_prometheus_scrapes_the_job(live: Live) -> None:
    assert live.prom.query(f'up{{job="{JOB}"}} == 1')
