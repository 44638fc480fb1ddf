"""A real Prometheus scrapes `dashboard-metrics serve` over PostgreSQL: every usage sample equals
the oracle's all-time totals, histogram_quantile lands in the right bucket, new events raise
counters by exactly their number, and a correction resets nothing."""

from __future__ import annotations

import bisect
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dashboard_metrics.core.catalogue import CATALOGUE
from dashboard_metrics.core.settings import Settings
from tests import oracle
from tests.conftest import reset_pg
from tests.harness import FakeClock, Harness, utc
from tests.test_metrics_helpers import NS, delete_usage, expected_samples, populate

# Prometheus comes from Debian's package (.ci/run installs it); without it these tests fail.
PROMETHEUS = shutil.which("prometheus")
T = TypeVar("T")
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Bounded polling: Prometheus scrapes every second, samples land when they land."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class Prom:
    def __init__(self, base: str) -> None:
        self.base = base

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = get_json(url)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def usage(self) -> Series:
        out: Series = {}
        for item in self.query(f'{{__name__=~"{NS}_.+", job="dm"}}'):
            labels = {k: v for k, v in item["metric"].items() if k not in {"job", "instance"}}
            name = labels.pop("__name__")
            out[(name, tuple(sorted(labels.items())))] = float(item["value"][1])
        return out


@pytest.fixture
def pg(pg_database: str, tmp_path: Path) -> Iterator[Harness]:
    reset_pg(pg_database)
    harness = Harness(
        Settings(data_dir=tmp_path, database_url=pg_database),
        FakeClock(utc(2026, 3, 15, 12, 30)),
    )
    yield harness
    harness.dispose()


@pytest.fixture
def served(pg: Harness, tmp_path: Path) -> Iterator[Prom]:
    port, prom_port = free_port(), free_port()
    env = {
        **os.environ,
        "DASHBOARD_METRICS_DATABASE_URL": pg.settings.rollup_url,
        "DASHBOARD_METRICS_DATA_DIR": str(tmp_path),
    }
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [sys.executable, "-m", "dashboard_metrics", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: dm\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    prom_log = (tmp_path / "prometheus.log").open("w")
    assert PROMETHEUS, "prometheus is required: apt-get install prometheus (.ci/run does)"
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=prom_log,
        stderr=subprocess.STDOUT,
    )
    try:
        poll("serve", lambda: get_json(f"http://127.0.0.1:{port}/healthz") or None)
        prom = Prom(f"http://127.0.0.1:{prom_port}")
        poll("the first scrape", lambda: [r for r in prom.query('up{job="dm"} == 1')] or None)
        yield prom
    finally:
        for process in (prometheus, serve):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        prom_log.close()


def expected_series(h: Harness) -> Series:
    return {
        (item.name, tuple(sorted(item.labels.items()))): float(item.value)
        for item in expected_samples(h)
    }


def matches(expected: Series, got: Series) -> bool:
    return all(
        key in got and math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-9)
        for key, value in expected.items()
    )


def wait_for(prom: Prom, expected: Series, what: str) -> Series:
    def check() -> Series | None:
        got = prom.usage()
        return got if matches(expected, got) else None

    return poll(what, check)


def check_quantiles(h: Harness, prom: Prom) -> None:
    events = oracle.events(h.source)
    for metric in (m for m in CATALOGUE if m.is_histogram):
        for q in (0.5, 0.9):
            expr = f"histogram_quantile({q}, {NS}_{metric.prometheus_name}_bucket)"
            answers = {r["metric"]["organization"]: float(r["value"][1]) for r in prom.query(expr)}
            values_by_org: dict[str, list[float]] = {}
            for org, name, _when, value in events:
                if name == metric.name:
                    values_by_org.setdefault(org, []).append(value)
            assert set(answers) == set(values_by_org), (metric.name, answers)
            for org, values in values_by_org.items():
                values.sort()
                true = values[max(0, math.ceil(q * len(values)) - 1)]
                index = bisect.bisect_left(metric.buckets, true)  # the bucket holding it
                answer = answers[org]
                if index == len(metric.buckets):  # +Inf: Prometheus answers the top bound
                    assert answer == metric.buckets[-1], (metric.name, org, q)
                    continue
                lower = metric.buckets[index - 1] if index else min(0.0, metric.buckets[0])
                assert lower <= answer <= metric.buckets[index], (metric.name, org, q, answer)


def test_prometheus_scrapes_oracle_totals(pg: Harness, served: Prom) -> None:
    h, prom = pg, served
    a, b, c = h.org(), h.org(), h.org()
    populate(h, [a, b, c])
    h.aggregator.tick()
    expected = expected_series(h)
    got = wait_for(prom, expected, "the oracle's totals")
    for (name, labels), value in got.items():  # nothing beyond them but zero corrections
        if (name, labels) not in expected:
            assert name.endswith("_corrections_total") and value == 0, (name, labels)
    check_quantiles(h, prom)

    # New events: every counter rises by exactly the oracle's new events.
    h.clock.advance(minutes=1)
    for _ in range(5):
        b.usage(h.clock(), reason="summarize", cost=0.3, tokens=3000)
    b.execution(h.clock(), kind="api")
    h.aggregator.tick()
    after = expected_series(h)
    now = wait_for(prom, after, "the new events")
    rises = {key: now[key] - got.get(key, 0.0) for key in after}
    org = (("organization", b.string_id),)
    assert rises[(f"{NS}_llm_summarization_calls_total", org)] == 5
    assert rises[(f"{NS}_llm_calls_total", org)] == 5
    assert rises[(f"{NS}_deployed_api_requests_total", org)] == 1
    assert rises[(f"{NS}_prompt_executions_total", org)] == 1
    assert rises[(f"{NS}_llm_challenges_total", org)] == 0
    others = {
        key: rise for key, rise in rises.items() if ("organization", b.string_id) not in key[1]
    }
    assert others and all(rise == 0 for rise in others.values())

    # A correction lowers the true totals; nothing Prometheus sees ever resets.
    removed = delete_usage(h, a, 4)
    h.clock.advance(minutes=1)
    h.aggregator.tick(reconcile=True)
    fixed = f'{NS}_llm_calls_corrections_total{{organization="{a.string_id}"}}'
    poll("the correction", lambda: prom.query(f"{fixed} == {removed}") or None)
    for metric in CATALOGUE:
        family = f"{NS}_{metric.prometheus_name}"
        names = [f"{family}_{part}" for part in ("bucket", "count", "sum")]
        for name in names if metric.is_histogram else [family]:
            resets = prom.query(f'sum(resets({name}{{job="dm"}}[5m]))')
            assert float(resets[0]["value"][1]) == 0, name
    current = oracle.totals(oracle.events(h.source))[(a.string_id, "llm_calls")].count
    diff = prom.query(f'{NS}_llm_calls_total{{organization="{a.string_id}"}} - ignoring() {fixed}')
    assert float(diff[0]["value"][1]) == current
