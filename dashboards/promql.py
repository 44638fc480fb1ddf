"""PromQL pieces derived from the metric catalogue (never hard-coded family names).

Two kinds of series, aggregated differently (see the README's "Replicas" section):

- **Global**: the usage families and the aggregator's figures (ticks, failures, tick duration,
  rows written, last tick, lag) come from the database, so every `serve` replica exposes the
  same values. Each is deduplicated with `max without (instance, pod)` before any other
  aggregation, and its movement over a window is the exact difference of two deduplicated values
  (`moved`), not `increase()`, whose extrapolation depends on when each replica was scraped.
  The answer is then the same for 1 or N replicas.
- **Per replica**: HTTP, cache, `database_up`, `build_info`, `process_*`, `python_*` and `up`
  describe one process; they are summed (traffic) or taken min/max (state) across replicas.
"""

from __future__ import annotations

import re

from dashboard_metrics.core.catalogue import Metric

DEFAULT_NAMESPACE = "unstract"
# The Prometheus job that scrapes `dashboard-metrics serve` (compose, Kubernetes, systemd docs).
JOB = "dashboard-metrics"
ORG = 'organization=~"$organization"'
# Target labels that tell replicas of one series apart (static configs, the Operator's pods).
REPLICA_LABELS = ("instance", "pod")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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


def braces(match: str) -> str:
    return f"{{{match}}}" if match else ""


def dedup(expr: str) -> str:
    """One series per global series, however many replicas expose it."""
    return f"max without ({', '.join(REPLICA_LABELS)}) ({expr})"


def _add(a: str, b: str) -> str:
    """Sum of two literal durations (`1h` + `1d` = `90000s`)."""
    seconds = 0
    for text in (a, b):
        found = _DURATION.match(text)
        if not found:
            raise ValueError(f"not a literal duration: {text!r}")
        seconds += int(found.group(1)) * _SECONDS[found.group(2)]
    return f"{seconds}s"


def moved(series: str, window: str, match: str = ORG, offset: str = "") -> str:
    """How much a global counter moved over `window` (ending `offset` ago), per series.

    The value at the end minus the value at the start. A series without a sample at the start
    counts from 0 when its organization has series that /metrics showed at both ends (it is
    new beside them: a new model, workflow or deployment); otherwise from its first sample in
    the window, as `increase()` does (a new organization, a Prometheus younger than the window,
    or a label set that changed whole: dimension labels turned on, or a family falling back to
    organization series at the series cap, which must not count all-time totals as moved). The
    counters never go down (they come from the database, not from a process), so the
    difference is exact.
    """
    selector = f"{series}{braces(match)}"
    at = f" offset {offset}" if offset else ""
    start = _add(offset, window) if offset else window
    end = dedup(f"{selector}{at}")
    before = dedup(f"{selector} offset {start}")
    first = dedup(f"min_over_time({selector}[{window}]{at})")
    kept = f"group by (organization) ({before} and {end})"
    new = f"({first} * 0 and on (organization) {kept})"
    return f"({end} - ({before} or {new} or {first}))"


def selected(series: str, window: str, by: str = "", match: str = ORG) -> str:
    """`sum [by (...)]` of a global counter's movement over the window (replica-safe)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} {moved(series, window, match)}"


def per_replica(series: str, window: str, fn: str = "rate", by: str = "", match: str = "") -> str:
    """`sum [by (...)] (fn(series[window]))` of a per-replica counter: the total over replicas."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({fn}({series}{braces(match)}[{window}]))"


def quantile(q: float, buckets: str, window: str, by: str = "", match: str = ORG) -> str:
    """Quantile of a global histogram over the window (replica-safe)."""
    grouping = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({grouping}) {moved(buckets, window, match)})"


def replica_quantile(q: float, buckets: str, window: str, by: str = "") -> str:
    """Quantile of a per-replica histogram over all replicas' observations."""
    grouping = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({grouping}) (rate({buckets}[{window}])))"


# Names of workflows and deployments reach Prometheus as info metrics (value 1, one series per
# organization and id), never as labels on the usage families.
NAME_LABELS = {"workflow": ("workflow_name",), "deployment": ("deployment_name", "deployment_type")}


def info_series(dimension: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}_{dimension}_info"


def named(expr: str, dimension: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """``expr`` (by organization and ``dimension``) with the dimension's names joined from its
    info metric. The info series are deduplicated over replicas and one per id is kept (a rename
    seen by one replica before the other cannot make the join many-to-many); series without
    one (no value, an id the source no longer has) stay, unnamed."""
    keys = f"organization, {dimension}"
    info = dedup(f"{info_series(dimension, namespace)}{braces(ORG)}")
    names = ", ".join(NAME_LABELS[dimension])
    joined = f"{expr} * on ({keys}) group_left ({names}) topk by ({keys}) (1, {info})"
    return f"({joined}) or on ({keys}) {expr}"
