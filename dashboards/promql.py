"""PromQL pieces derived from the metric catalogue (never hard-coded family names)."""

from __future__ import annotations

from aggregator.catalogue import Metric

DEFAULT_NAMESPACE = "unstract"
# The Prometheus job that scrapes `dashboard-metrics serve` (compose, Kubernetes, systemd docs).
JOB = "dashboard-metrics"
ORG = 'organization=~"$organization"'


def family(metric: Metric, namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}_{metric.prometheus_name}"


def value_series(metric: Metric, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The counter whose increase is the metric's value: events, or the histogram's _sum."""
    name = family(metric, namespace)
    return f"{name}_sum" if metric.is_histogram else name


def count_series(metric: Metric, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The counter whose increase is the number of events."""
    name = family(metric, namespace)
    return f"{name}_count" if metric.is_histogram else name


def bucket_series(metric: Metric, namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{family(metric, namespace)}_bucket"


def selected(series: str, window: str, fn: str = "increase", by: str = "", match: str = ORG) -> str:
    """`sum [by (...)] (fn(series{organization=~"$organization"}[window]))`."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({fn}({series}{braces(match)}[{window}]))"


def quantile(q: float, buckets: str, window: str, by: str = "", match: str = ORG) -> str:
    grouping = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({grouping}) (rate({buckets}{braces(match)}[{window}])))"
    )


def braces(match: str) -> str:
    return f"{{{match}}}" if match else ""
