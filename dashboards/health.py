"""Pipeline health: the service's own dashboard_metrics_* metrics and Prometheus's `up`."""

from __future__ import annotations

from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.models import dashboard as md
from grafana_foundation_sdk.models.common import BigValueTextMode

from dashboard_metrics.dashboards.common import (
    AnyPanel,
    Sections,
    prometheus_variable,
    promql,
    render,
    stat_panel,
    timeseries_panel,
    up_down,
)
from dashboard_metrics.dashboards.promql import (
    JOB,
    per_replica,
    quantile,
    replica_quantile,
    selected,
)
from dashboard_metrics.dashboards.rules import HTTP_5XX_RULE, HTTP_RATE_RULE

UID = "dm-pipeline-health"
P = "dashboard_metrics"
TICK = f"{P}_tick_duration_seconds"
TICK_BUCKET_SERIES = f"{TICK}_bucket"
HTTP = f"{P}_http_request_duration_seconds"
CACHE = f"{P}_cache_requests_total"
UP = f'up{{job="{JOB}"}}'
ALL = ""  # no label matcher: the service's own metrics carry no organization


def since_last_tick() -> str:
    return f"time() - max({P}_last_successful_tick_timestamp_seconds)"


def http_5xx_ratio(window: str, by: str = "") -> str:
    """5xx responses / all responses; 0 (not 'no data') while there are no 5xx at all."""
    grouping = f" by ({by})" if by else ""
    errors = f'sum{grouping} (rate({HTTP}_count{{status_class="5xx"}}[{window}]))'
    total = f"sum{grouping} (rate({HTTP}_count[{window}]))"
    return f"({errors} or {total} * 0) / {total}"


def cache_hit_ratio(window: str) -> str:
    hits = f'sum (rate({CACHE}{{result="hit"}}[{window}]))'
    total = f"sum (rate({CACHE}[{window}]))"
    return f"({hits} or {total} * 0) / {total}"


def build() -> md.Dashboard:
    return render(
        UID,
        "dashboard-metrics / Pipeline health",
        "The health of dashboard-metrics itself: scrape target, database, aggregator ticks "
        "(duration, failures, lag, time since the last success, rows written), HTTP latency and "
        "errors by route, and the cache hit ratio.",
        [prometheus_variable()],
        sections(),
        time_from="now-6h",
    )


def sections() -> Sections:
    return {
        "Status": status(),
        "Aggregator": aggregator(),
        "HTTP and cache": http_and_cache(),
    }


def status() -> list[AnyPanel]:
    return [
        stat_panel(
            "Exporter up",
            f"Prometheus's `up` for the job {JOB}: 1 when the last scrape of serve succeeded.",
            "none",
            [promql(f"min({UP})", instant=True)],
            width=5,
            mappings=up_down(),
        ),
        stat_panel(
            "Database up",
            "Whether serve reached the rollup database at the last scrape "
            "(dashboard_metrics_database_up).",
            "none",
            [promql(f"min({P}_database_up)", instant=True)],
            width=5,
            mappings=up_down(),
        ),
        stat_panel(
            "Time since the last successful tick",
            "Seconds since the aggregator last committed a tick; "
            "it should stay near the tick interval.",
            "s",
            [promql(since_last_tick(), instant=True)],
            width=5,
        ),
        stat_panel(
            "Rollup lag",
            "How far the rollups trail the source (dashboard_metrics_rollup_lag_seconds).",
            "s",
            [promql(f"max({P}_rollup_lag_seconds)", instant=True)],
            width=5,
        ),
        stat_panel(
            "Version",
            "The running version(s) of dashboard-metrics (dashboard_metrics_build_info).",
            "none",
            [promql(f"max by (version) ({P}_build_info)", legend="{{version}}", instant=True)],
            width=4,
            text_mode=BigValueTextMode.NAME,
        ),
    ]


def aggregator() -> list[AnyPanel]:
    return [
        timeseries_panel(
            "Tick duration",
            "Aggregator tick duration: p50/p95/p99 from the histogram buckets and the mean.",
            "s",
            tick_duration_queries(),
        ),
        timeseries_panel(
            "Ticks and failures",
            "Aggregator ticks and failed ticks per interval; failures should stay at 0.",
            "short",
            [
                promql(selected(f"{P}_ticks_total", "$__interval", match=ALL), "ticks", "A"),
                promql(
                    selected(f"{P}_tick_failures_total", "$__interval", match=ALL), "failures", "B"
                ),
            ],
            bars=True,
        ),
        timeseries_panel(
            "Lag and time since the last successful tick",
            "Rollup lag and seconds since the last successful tick; both alert when too high.",
            "s",
            [
                promql(f"max({P}_rollup_lag_seconds)", legend="rollup lag", ref="A"),
                promql(since_last_tick(), legend="since last successful tick", ref="B"),
            ],
        ),
        timeseries_panel(
            "Rows written by tier",
            "Rollup rows upserted per interval, by tier (hourly, daily, monthly).",
            "short",
            [
                promql(
                    selected(f"{P}_rows_written_total", "$__interval", by="tier", match=ALL),
                    legend="{{tier}}",
                )
            ],
            stacked=True,
        ),
    ]


def tick_duration_queries() -> list[prom.Dataquery]:
    """p50/p95/p99 of the tick duration histogram, and its mean."""
    quantiles = [
        promql(
            quantile(q, TICK_BUCKET_SERIES, "$__rate_interval", match=ALL),
            legend=f"p{round(q * 100)}",
            ref=ref,
        )
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]
    mean = (
        f"{selected(f'{TICK}_sum', '$__rate_interval', match=ALL)} / "
        f"{selected(f'{TICK}_count', '$__rate_interval', match=ALL)}"
    )
    return [*quantiles, promql(mean, legend="mean", ref="D")]


def http_and_cache() -> list[AnyPanel]:
    return [
        timeseries_panel(
            "Requests by route",
            "Requests per second over all serve replicas by route and status class, averaged "
            f"over 5 minutes (recording rule {HTTP_RATE_RULE}).",
            "reqps",
            [promql(HTTP_RATE_RULE, legend="{{route}} {{status_class}}")],
            stacked=True,
        ),
        timeseries_panel(
            "Latency p95 by route",
            "95th percentile of HTTP request duration by route, from the histogram buckets.",
            "s",
            [
                promql(
                    replica_quantile(0.95, f"{HTTP}_bucket", "$__rate_interval", by="route"),
                    legend="{{route}}",
                )
            ],
        ),
        timeseries_panel(
            "5xx error ratio by route",
            "Fraction of responses with a 5xx status over all serve replicas, by route and for "
            f"all routes over 5 minutes (recording rule {HTTP_5XX_RULE}, also used by the "
            "alert); 0 while there are none.",
            "percentunit",
            [
                promql(http_5xx_ratio("$__rate_interval", by="route"), legend="{{route}}"),
                promql(HTTP_5XX_RULE, legend="all routes (5m)", ref="B"),
            ],
        ),
        timeseries_panel(
            "Cache hit ratio",
            "Cache hits / all cache lookups (Redis or the in-process cache).",
            "percentunit",
            [promql(cache_hit_ratio("$__rate_interval"), legend="hit ratio", ref="A")],
        ),
        timeseries_panel(
            "Cache lookups by result",
            "Cache lookups per second by result: hit, miss, or error (cache unavailable).",
            "ops",
            [promql(per_replica(CACHE, "$__rate_interval", by="result"), legend="{{result}}")],
            stacked=True,
            width=24,
        ),
    ]
