"""The service's own families under dashboard_metrics_: aggregator runs (from aggregator_state,
so every replica reports the same), HTTP latency, cache results, database reachability."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from dashboard_metrics.core import runstats, state
from dashboard_metrics.core.schema import TIERS
from dashboard_metrics.exporter.metrics.buckets import cumulative, le_labels
from dashboard_metrics.exporter.stats import HTTP_BUCKETS, DurationHistogram

METRIC_PREFIX = "dashboard_metrics"
CACHE_RESULTS = ("hit", "miss", "error")


@dataclass(frozen=True)
class ServiceInputs:
    database_up: bool
    state: Mapping[str, Any]  # aggregator_state values; empty when the database is down
    cache: Mapping[str, int]
    http: Mapping[tuple[str, str, str], DurationHistogram]
    now: datetime
    version: str


def _tick_families(values: Mapping[str, Any], now: datetime) -> list[Metric]:
    families: list[Metric] = []
    for name, key, what in (
        ("ticks_total", state.TICKS_TOTAL, "Aggregator ticks committed"),
        ("tick_failures_total", state.TICK_FAILURES_TOTAL, "Aggregator ticks that failed"),
    ):
        family = CounterMetricFamily(
            f"{METRIC_PREFIX}_{name}", f"{what} (from aggregator_state; all aggregator processes)."
        )
        family.add_metric([], int(values.get(key) or 0))
        families.append(family)
    stats = runstats.load(values.get(runstats.RUNSTATS))
    duration = stats["tick_duration"]
    histogram = HistogramMetricFamily(
        f"{METRIC_PREFIX}_tick_duration_seconds",
        "Wall time of committed aggregator ticks (from aggregator_state).",
        unit="seconds",
    )
    histogram.add_metric(
        [],
        cumulative(le_labels(runstats.TICK_BUCKETS), [int(c) for c in duration["buckets"]]),
        sum_value=float(duration["sum"]),
    )
    written = CounterMetricFamily(
        f"{METRIC_PREFIX}_rows_written_total",
        "Rollup rows written (inserted, updated or deleted) by aggregator ticks, per tier.",
        labels=["tier"],
    )
    for tier in TIERS:
        written.add_metric([tier], int(stats["rows_written"][tier]))
    families += [histogram, written]
    last = values.get(state.LAST_TICK)
    if isinstance(last, dict) and last.get("started_at"):
        started = datetime.fromisoformat(last["started_at"])
        families.append(
            GaugeMetricFamily(
                f"{METRIC_PREFIX}_last_successful_tick_timestamp_seconds",
                "Start (Unix time) of the last committed aggregator tick: the rollups reflect "
                "the source tables as of then.",
                value=started.timestamp(),
                unit="seconds",
            )
        )
        families.append(
            GaugeMetricFamily(
                f"{METRIC_PREFIX}_rollup_lag_seconds",
                "Seconds from the start of the last committed aggregator tick to this scrape.",
                value=max(0.0, (now - started).total_seconds()),
                unit="seconds",
            )
        )
    return families


def _http_family(http: Mapping[tuple[str, str, str], DurationHistogram]) -> Metric:
    family = HistogramMetricFamily(
        f"{METRIC_PREFIX}_http_request_duration_seconds",
        "HTTP request handling time of this service replica, by route template.",
        labels=["route", "method", "status_class"],
        unit="seconds",
    )
    for (route, method, status_class), hist in sorted(http.items()):
        family.add_metric(
            [route, method, status_class],
            cumulative(le_labels(HTTP_BUCKETS), list(hist.buckets)),
            sum_value=hist.total,
        )
    return family


def families(inputs: ServiceInputs) -> list[Metric]:
    # An OpenMetrics info family: dashboard_metrics_build_info{version="..."} 1 in both formats.
    info = InfoMetricFamily(
        f"{METRIC_PREFIX}_build", "Version of this dashboard-metrics service.", labels=["version"]
    )
    info.add_metric([inputs.version], {})
    up = GaugeMetricFamily(
        f"{METRIC_PREFIX}_database_up",
        "1 when this scrape read the rollup database, 0 when it could not (usage families "
        "are then left out).",
        value=1 if inputs.database_up else 0,
    )
    cache = CounterMetricFamily(
        f"{METRIC_PREFIX}_cache_requests_total",
        "JSON API cache lookups of this service replica, by result.",
        labels=["result"],
    )
    for result in CACHE_RESULTS:
        cache.add_metric([result], int(inputs.cache.get(result, 0)))
    out = [info, up, cache, _http_family(inputs.http)]
    if inputs.database_up:
        out += _tick_families(inputs.state, inputs.now)
    return out
