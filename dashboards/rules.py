"""Prometheus recording and alerting rules shipped beside the dashboards.

Each alert keeps its `signal` (the expression that carries data) apart from its condition, so the
tests can check that the signal returns data from a real Prometheus and that the condition fires
and stays silent where it should (`promtool test rules`). Each alert has a runbook section in the
README's operations guide; `runbook_url` points at its anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aggregator.catalogue import CATALOGUE, metric
from dashboards.promql import DEFAULT_NAMESPACE, JOB, family, value_series

# Runbooks live in the README's operations guide; point this at your copy when you fork.
RUNBOOK_BASE = "README.md"
STALE_MINUTES = 10
LAG_SECONDS = 900
FAILURES_IN_15M = 3
HTTP_5XX_RATIO = 0.05
COST_SPIKE_FACTOR = 3
COST_SPIKE_MIN_USD = 1.0
HTTP_COUNT = "dashboard_metrics_http_request_duration_seconds_count"
HTTP_5XX_RULE = "dashboard_metrics:http_5xx_ratio:rate5m"
HTTP_RATE_RULE = "route_status_class:dashboard_metrics_http_requests:rate5m"


def hourly_rule(metric_family: str) -> str:
    return f"organization:{metric_family}:increase1h"


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

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, "service": "dashboard-metrics"},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": f"{RUNBOOK_BASE}#{self.anchor}",
            },
        }


def recording_rules(namespace: str = DEFAULT_NAMESPACE) -> list[dict[str, str]]:
    rules = [
        {
            "record": hourly_rule(family(m, namespace)),
            "expr": f"sum by (organization) (increase({value_series(m, namespace)}[1h]))",
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
                f'(sum (rate({HTTP_COUNT}{{status_class="5xx"}}[5m])) '
                f"or sum (rate({HTTP_COUNT}[5m])) * 0) / sum (rate({HTTP_COUNT}[5m]))"
            ),
        }
    )
    return rules


def alerts(namespace: str = DEFAULT_NAMESPACE) -> list[Alert]:
    up = f'up{{job="{JOB}"}}'
    since = "time() - max(dashboard_metrics_last_successful_tick_timestamp_seconds)"
    lag = "max(dashboard_metrics_rollup_lag_seconds)"
    failures = "sum (increase(dashboard_metrics_tick_failures_total[15m]))"
    cost = hourly_rule(family(metric("llm_usage"), namespace))
    cost_sum = value_series(metric("llm_usage"), namespace)
    baseline = f"sum by (organization) (increase({cost_sum}[1d] offset 1h)) / 24"
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


def rule_groups(namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
    return {
        "groups": [
            {"name": "dashboard-metrics.recording", "rules": recording_rules(namespace)},
            {"name": "dashboard-metrics.alerts", "rules": [a.rule() for a in alerts(namespace)]},
        ]
    }
