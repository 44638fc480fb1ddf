"""Prometheus rules and every PromQL expression, checked by promtool (no server needed).

`promtool test rules` runs each alert through a scenario where it must fire and one (or more)
where it must stay silent. The annotations are checked apart (promtool compares rendered
annotations exactly, which would tie these scenarios to the wording), so the rules used in the
scenarios are the generated ones with their annotations removed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from dashboard_metrics.dashboards import checks, generate
from dashboard_metrics.dashboards.rules import alerts, rule_groups

PROMTOOL = shutil.which("promtool")


@pytest.fixture(autouse=True)
def _require_promtool() -> None:
    assert PROMTOOL, "promtool is required: apt-get install prometheus (.ci/run does)"


GENERATED = Path(generate.__file__).resolve().parent / "generated"
README = Path(generate.__file__).resolve().parents[1] / "README.md"
BASE = {"severity": "warning", "service": "dashboard-metrics"}
CRITICAL = {**BASE, "severity": "critical"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def all_dashboard_promql() -> list[str]:
    exprs = []
    for name in generate.DASHBOARDS:
        dashboard = json.loads((GENERATED / name).read_text())
        exprs += [checks.promql_for_test(q.text) for q in checks.queries(dashboard)]
        for variable in dashboard["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable.get("definition", ""))
            if match and variable.get("datasource", {}).get("type") == "prometheus":
                exprs.append(match.group(1))
    return [e for e in exprs if not e.lstrip().upper().startswith("SELECT")]


def test_generated_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(GENERATED / generate.RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_expression_passes_promtool_check(tmp_path: Path) -> None:
    exprs = all_dashboard_promql()
    exprs += [a.signal for a in alerts()]
    assert len(exprs) > 80
    groups = {
        "groups": [
            {
                "name": "expressions",
                "rules": [{"record": f"check_expr_{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump(groups))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    rule = {"record": "bad", "expr": "sum(rate(x[1m]"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_alerts_have_summary_description_and_runbook() -> None:
    readme = README.read_text()
    operations = readme.split("<!-- section:operations -->")[1].split(
        "<!-- /section:operations -->"
    )[0]
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in operations.splitlines()
        if line.startswith("#")
    }
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            annotations = rule["annotations"]
            assert annotations["summary"] and annotations["description"]
            anchor = annotations["runbook_url"].split("#", 1)[1]
            assert anchor in headings, f"no runbook section for {rule['alert']} in the README"


def test_runbook_urls_are_absolute_under_a_configurable_base(tmp_path: Path) -> None:
    base = "https://wiki.example.org/ops/dashboard-metrics.md"
    cli = [sys.executable, "-m", "dashboard_metrics", "dashboards", "--out"]
    done = subprocess.run([*cli, str(tmp_path), "--runbook-base-url", base], timeout=120)
    assert done.returncode == 0
    rules = yaml.safe_load((tmp_path / generate.RULES_FILE).read_text())
    urls = [
        r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"] if "alert" in r
    ]
    assert urls and all(
        u.startswith(f"{base}#dashboardmetrics") or u.startswith(f"{base}#unstract") for u in urls
    )
    kube = yaml.safe_load((tmp_path / "kubernetes" / "prometheusrule.yaml").read_text())
    assert kube["spec"] == rules
    shipped = yaml.safe_load((GENERATED / generate.RULES_FILE).read_text())
    for group in shipped["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                url = urlsplit(rule["annotations"]["runbook_url"])
                assert url.scheme == "https" and url.netloc and url.fragment
    bad_cli = [*cli, str(tmp_path / "bad"), "--runbook-base-url", "README.md"]
    assert subprocess.run(bad_cli, capture_output=True, timeout=120).returncode == 2
    for bad in ("README.md", "/runbooks", "ftp://host/x", "https://host/x#frag"):
        assert generate.main(str(tmp_path / "bad"), runbook_base=bad) == 2
    assert not (tmp_path / "bad").exists()


def _series(name: str, values: str) -> dict[str, str]:
    return {"series": name, "values": values}


def _case(
    series: list[dict[str, str]], checks_: list[tuple[str, str, list[dict[str, str]]]]
) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {
                "eval_time": at,
                "alertname": name,
                "exp_alerts": [{"exp_labels": labels} for labels in expected],
            }
            for name, at, expected in checks_
        ],
    }


HTTP = "dashboard_metrics_http_request_duration_seconds_count"
COST = "unstract_llm_call_cost_usd_sum"
UP = 'up{job="dashboard-metrics", instance="dm:8080"}'
UP_LABELS = {**CRITICAL, "job": "dashboard-metrics", "instance": "dm:8080"}
DB_UP = 'dashboard_metrics_database_up{{job="dashboard-metrics", instance="{}"}}'
FAILURES = 'dashboard_metrics_tick_failures_total{{job="dashboard-metrics", instance="{}"}}'
LAST_TICK = "dashboard_metrics_last_successful_tick_timestamp_seconds"
SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "DashboardMetricsExporterDown": [
        _case([_series(UP, "0x10")], [("DashboardMetricsExporterDown", "7m", [UP_LABELS])]),
        _case([_series(UP, "1x10")], [("DashboardMetricsExporterDown", "7m", [])]),
        _case([_series(UP, "0 0 1x8")], [("DashboardMetricsExporterDown", "7m", [])]),
        _case(
            [_series("dashboard_metrics_database_up", "1x10")],
            [("DashboardMetricsExporterDown", "7m", [{**CRITICAL, "job": "dashboard-metrics"}])],
        ),
    ],
    "DashboardMetricsAggregatorStale": [
        _case(
            [_series("dashboard_metrics_last_successful_tick_timestamp_seconds", "0x30")],
            [("DashboardMetricsAggregatorStale", "20m", [CRITICAL])],
        ),
        _case(
            [_series("dashboard_metrics_last_successful_tick_timestamp_seconds", "0+60x30")],
            [("DashboardMetricsAggregatorStale", "20m", [])],
        ),
    ],
    "DashboardMetricsDatabaseDown": [
        # Every replica reports the database down: one alert for the job, not one per replica.
        _case(
            [_series(DB_UP.format("a"), "1 1 0x10"), _series(DB_UP.format("b"), "1 0x11")],
            [("DashboardMetricsDatabaseDown", "8m", [{**CRITICAL, "job": "dashboard-metrics"}])],
        ),
        # One replica still reads it: the database is up (that replica's readiness tells).
        _case(
            [_series(DB_UP.format("a"), "0x10"), _series(DB_UP.format("b"), "1x10")],
            [("DashboardMetricsDatabaseDown", "8m", [])],
        ),
        _case(
            [_series(DB_UP.format("a"), "0 0 1x8")],
            [("DashboardMetricsDatabaseDown", "8m", [])],
        ),
    ],
    "DashboardMetricsTickSeriesAbsent": [
        # The database is down: serve drops the tick series, so AggregatorStale goes silent.
        _case(
            [
                _series(DB_UP.format("a"), "0x25"),
                _series(LAST_TICK, "0+60x3 _x22"),
            ],
            [
                ("DashboardMetricsTickSeriesAbsent", "20m", [CRITICAL]),
                ("DashboardMetricsAggregatorStale", "20m", []),
            ],
        ),
        _case(
            [_series(LAST_TICK, "0+60x25")],
            [("DashboardMetricsTickSeriesAbsent", "20m", [])],
        ),
    ],
    "DashboardMetricsRollupLagHigh": [
        _case(
            [_series("dashboard_metrics_rollup_lag_seconds", "1000x30")],
            [("DashboardMetricsRollupLagHigh", "20m", [BASE])],
        ),
        _case(
            [_series("dashboard_metrics_rollup_lag_seconds", "100x30")],
            [("DashboardMetricsRollupLagHigh", "20m", [])],
        ),
    ],
    "DashboardMetricsTickFailures": [
        _case(
            [_series("dashboard_metrics_tick_failures_total", "0+1x30")],
            [("DashboardMetricsTickFailures", "20m", [BASE])],
        ),
        _case(
            [_series("dashboard_metrics_tick_failures_total", "0 0 0 1x27")],
            [("DashboardMetricsTickFailures", "20m", [])],
        ),
        # Two replicas expose the same two failures: still two, below the threshold.
        _case(
            [_series(FAILURES.format(i), "0x10 2x10") for i in "ab"],
            [("DashboardMetricsTickFailures", "15m", [])],
        ),
        _case(
            [_series(FAILURES.format(i), "0x10 3x10") for i in "ab"],
            [("DashboardMetricsTickFailures", "15m", [BASE])],
        ),
    ],
    "DashboardMetricsHttp5xxRatioHigh": [
        _case(
            [
                _series(f'{HTTP}{{route="/r", status_class="2xx"}}', "0+100x30"),
                _series(f'{HTTP}{{route="/r", status_class="5xx"}}', "0+10x30"),
            ],
            [("DashboardMetricsHttp5xxRatioHigh", "25m", [BASE])],
        ),
        _case(
            [
                _series(f'{HTTP}{{route="/r", status_class="2xx"}}', "0+100x30"),
                _series(f'{HTTP}{{route="/r", status_class="5xx"}}', "0+1x30"),
            ],
            [("DashboardMetricsHttp5xxRatioHigh", "25m", [])],
        ),
        _case(
            [_series(f'{HTTP}{{route="/r", status_class="2xx"}}', "0+100x30")],
            [("DashboardMetricsHttp5xxRatioHigh", "25m", [])],
        ),
    ],
    "UnstractLlmCostSpike": [
        # 0.6 USD/h for 26 hours, then 12 USD/h for two hours: fires for org_a only.
        _case(
            [
                _series(f'{COST}{{organization="org_a"}}', "0+0.01x1560 15.6+0.2x120"),
                _series(f'{COST}{{organization="org_b"}}', "0+0.1x1680"),
            ],
            [("UnstractLlmCostSpike", "27h", [{**BASE, "organization": "org_a"}])],
        ),
        # A steady 6 USD/h is high but not a spike; a spike below the 1 USD floor is noise.
        _case(
            [
                _series(f'{COST}{{organization="org_b"}}', "0+0.1x1680"),
                _series(f'{COST}{{organization="org_c"}}', "0+0.0001x1560 0.156+0.01x120"),
            ],
            [("UnstractLlmCostSpike", "27h", [])],
        ),
        # Two replicas: org_a's spike fires once, without replica labels; org_c's 0.6 USD hour
        # (under the 1 USD floor) stays silent although two replicas expose it.
        _case(
            [
                *(
                    _series(f'{COST}{{organization="{org}", instance="{i}"}}', values)
                    for i in "ab"
                    for org, values in (
                        ("org_a", "0+0.01x1560 15.6+0.2x120"),
                        ("org_c", "0+0.0001x1560 0.156+0.01x120"),
                    )
                ),
            ],
            [("UnstractLlmCostSpike", "27h", [{**BASE, "organization": "org_a"}])],
        ),
    ],
}


def test_every_alert_has_scenarios() -> None:
    assert set(SCENARIOS) == {a.name for a in alerts()}
    for name, cases in SCENARIOS.items():
        expectations = [t["exp_alerts"] for c in cases for t in c["alert_rule_test"]]
        assert any(expectations) and not all(expectations), f"{name}: needs fire and silence"


@pytest.mark.parametrize("alert", sorted(SCENARIOS))
def test_alert_fires_and_stays_silent(alert: str, tmp_path: Path) -> None:
    groups = rule_groups()
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(groups))
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": SCENARIOS[alert],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", str(tmp_path / "test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The harness itself: promtool must report an alert that was expected but stayed silent."""
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rule_groups()))
    case = _case(
        [_series("dashboard_metrics_rollup_lag_seconds", "100x30")],
        [("DashboardMetricsRollupLagHigh", "20m", [BASE])],
    )
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [case]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests))
    assert promtool("test", "rules", str(tmp_path / "test.yml")).returncode != 0
