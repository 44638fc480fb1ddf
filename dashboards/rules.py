"""Prometheus recording and alerting rules shipped beside the dashboards.

Each alert keeps its `signal` (the expression that carries data) apart from its condition, so the
tests can check that the signal returns data from a real Prometheus and that the condition fires
and stays silent where it should (`promtool test rules`). Each alert has a runbook section in the
README's operations guide; `runbook_url` points at its anchor under an absolute base URL.

Counters that come from the database are deduplicated across serve replicas and measured
with `promql.moved` (see dashboards/promql.py), so the rules answer the same for 1 or N
replicas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dashboard_metrics.core.catalogue import CATALOGUE, Metric, metric
from dashboard_metrics.dashboards.promql import (
    DEFAULT_NAMESPACE,
    JOB,
    REPLICA_LABELS,
    dedup,
    moved,
    value_series,
)

# Runbooks are the README's "Alert runbooks" sections: `runbook_url` is this base plus
# `#<alert name in lower case>`. Point it at your copy with `dashboards --runbook-base-url`.
DEFAULT_RUNBOOK_BASE = "https://runbooks.example.com/dashboard-metrics/README.md"
STALE_MINUTES = 10
LAG_SECONDS = 900
FAILURES_IN_15M = 3
HTTP_5XX_RATIO = 0.05
COST_SPIKE_FACTOR = 3
COST_SPIKE_MIN_USD = 1.0
HTTP_COUNT = "dashboard_metrics_http_request_duration_seconds_count"
# Recording rules are named level:metric:operations (Prometheus's convention).
HTTP_RATE_RULE = f"route_status_class:{HTTP_COUNT}:rate5m"
HTTP_5XX_RULE = "job:dashboard_metrics_http_5xx_per_requests:ratio_rate5m"
LAST_TICK = "dashboard_metrics_last_successful_tick_timestamp_seconds"


def hourly_rule(m: Metric, namespace: str = DEFAULT_NAMESPACE) -> str:
    """Recording rule: a catalogue metric's value per organization over the last hour."""
    return f"organization:{value_series(m, namespace)}:increase1h"


def check_runbook_base(base: str) -> str:
    """The base must be an absolute http(s) URL: alert receivers cannot resolve anything else."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ValueError(f"runbook base URL must be an absolute http(s) URL: {base!r}")
    return base


@dataclass(frozen=True)
class Alert:
    name: str
    signal: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str

    @property
    def anchor(self) -> str:
        return self.name.lower()

    def rule(self, runbook_base: str = DEFAULT_RUNBOOK_BASE) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, "service": "dashboard-metrics"},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": f"{check_runbook_base(runbook_base)}#{self.anchor}",
            },
        }


def recording_rules(namespace: str = DEFAULT_NAMESPACE) -> list[dict[str, str]]:
    rules = [
        {
            "record": hourly_rule(m, namespace),
            "expr": f"sum by (organization) {moved(value_series(m, namespace), '1h', match='')}",
        }
        for m in CATALOGUE
    ]
    rules.append(
        {
            "record": HTTP_RATE_RULE,
            "expr": f"sum by (route, status_class) (rate({HTTP_COUNT}[5m]))",
        }
    )
    rules.append(
        {
            "record": HTTP_5XX_RULE,
            "expr": (
                f'(sum by (job) (rate({HTTP_COUNT}{{status_class="5xx"}}[5m])) '
                f"or sum by (job) (rate({HTTP_COUNT}[5m])) * 0) "
                f"/ sum by (job) (rate({HTTP_COUNT}[5m]))"
            ),
        }
    )
    return rules


def alerts(namespace: str = DEFAULT_NAMESPACE) -> list[Alert]:
    return [*outage_alerts(), *degradation_alerts(namespace)]


def outage_alerts() -> list[Alert]:
    """Critical: the service, its database or its aggregator is gone."""
    up = f'up{{job="{JOB}"}}'
    since = f"time() - max({LAST_TICK})"
    database = dedup("dashboard_metrics_database_up")
    replicas = ", ".join(REPLICA_LABELS)
    return [
        Alert(
            "DashboardMetricsExporterDown",
            up,
            f"{up} == 0 or absent({up})",
            "5m",
            "critical",
            "dashboard-metrics serve is down or not scraped",
            f"Prometheus has not scraped the job {JOB} ({{{{ $labels.instance }}}}) "
            "successfully for 5 minutes: no usage or health metrics are collected.",
        ),
        Alert(
            "DashboardMetricsAggregatorStale",
            since,
            f"{since} > {STALE_MINUTES * 60}",
            "2m",
            "critical",
            f"No successful aggregator tick for {STALE_MINUTES} minutes",
            "The last successful aggregator tick was {{ $value | humanizeDuration }} ago; "
            "the rollups, the API and /metrics are going stale.",
        ),
        Alert(
            "DashboardMetricsDatabaseDown",
            database,
            f"{database} == 0",
            "2m",
            "critical",
            "dashboard-metrics cannot read its rollup database",
            "No serve replica of {{ $labels.job }} has read the rollup database for 2 minutes "
            f"(dashboard_metrics_database_up, the best over {replicas}): /metrics carries no "
            "usage or aggregator series and the JSON API fails.",
        ),
        Alert(
            "DashboardMetricsTickSeriesAbsent",
            f"max({LAST_TICK})",
            f"absent({LAST_TICK})",
            f"{STALE_MINUTES}m",
            "critical",
            "No aggregator tick is visible",
            f"No {LAST_TICK} series for {STALE_MINUTES} minutes: the rollup database is "
            "unreachable, the aggregator has never committed a tick, or serve is not scraped. "
            "DashboardMetricsAggregatorStale cannot fire without it.",
        ),
    ]


def degradation_alerts(namespace: str) -> list[Alert]:
    """Warnings: the service works but lags, fails now and then, or sees a cost spike."""
    lag = "max(dashboard_metrics_rollup_lag_seconds)"
    failures = f"sum {moved('dashboard_metrics_tick_failures_total', '15m', match='')}"
    cost_metric = metric("llm_usage")
    cost = hourly_rule(cost_metric, namespace)
    day = moved(value_series(cost_metric, namespace), "1d", match="", offset="1h")
    baseline = f"sum by (organization) {day} / 24"
    return [
        Alert(
            "DashboardMetricsRollupLagHigh",
            lag,
            f"{lag} > {LAG_SECONDS}",
            "10m",
            "warning",
            "The rollups trail the source tables",
            "The rollups are {{ $value | humanizeDuration }} behind the source tables "
            f"(threshold {LAG_SECONDS // 60} minutes).",
        ),
        Alert(
            "DashboardMetricsTickFailures",
            failures,
            f"{failures} >= {FAILURES_IN_15M}",
            "0m",
            "warning",
            "Aggregator ticks are failing",
            "{{ $value }} aggregator ticks failed in the last 15 minutes.",
        ),
        Alert(
            "DashboardMetricsHttp5xxRatioHigh",
            HTTP_5XX_RULE,
            f"{HTTP_5XX_RULE} > {HTTP_5XX_RATIO}",
            "10m",
            "warning",
            "dashboard-metrics serve answers with 5xx errors",
            "{{ $value | humanizePercentage }} of HTTP responses in the last 5 minutes were "
            f"5xx (threshold {HTTP_5XX_RATIO:.0%}).",
        ),
        Alert(
            "UnstractLlmCostSpike",
            cost,
            f"{cost} > {COST_SPIKE_FACTOR} * ({baseline}) and {cost} > {COST_SPIKE_MIN_USD}",
            "15m",
            "warning",
            "LLM cost spike for {{ $labels.organization }}",
            '{{ $labels.organization }} spent {{ $value | printf "%.2f" }} USD on LLM calls in '
            f"the last hour, more than {COST_SPIKE_FACTOR}x its hourly average of the previous "
            "day.",
        ),
    ]


def rule_groups(
    namespace: str = DEFAULT_NAMESPACE, runbook_base: str = DEFAULT_RUNBOOK_BASE
) -> dict[str, Any]:
    return {
        "groups": [
            {"name": "dashboard-metrics.recording", "rules": recording_rules(namespace)},
            {
                "name": "dashboard-metrics.alerts",
                "rules": [a.rule(runbook_base) for a in alerts(namespace)],
            },
        ]
    }
