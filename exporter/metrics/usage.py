"""Usage families: one per catalogue metric, from the metric_totals table.

The families of one totals version are built once and shared read-only by every scrape until
the aggregator changes the totals (the version in aggregator_state moves with each change), so
a scrape costs one small state query plus rendering.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from sqlalchemy import select
from sqlalchemy.engine import Connection

from aggregator.catalogue import CATALOGUE
from aggregator.catalogue import Metric as CatalogueMetric
from aggregator.totals import metric_totals
from exporter.metrics.config import MetricsConfig

# organization, metric, monotonic value, monotonic count, monotonic buckets (JSON), true count
TotalsRow = tuple[str, str, float, int, str | None, int]
SOURCE = "metric_totals (all-time sums of event_metrics_monthly)"


def base_name(metric: CatalogueMetric) -> str:
    name = metric.prometheus_name
    return name[: -len("_total")] if name.endswith("_total") else name


def family_name(namespace: str, metric: CatalogueMetric) -> str:
    return f"{namespace}_{metric.prometheus_name}"


def corrections_name(namespace: str, metric: CatalogueMetric) -> str:
    return f"{namespace}_{base_name(metric)}_corrections_total"


def _help(namespace: str, metric: CatalogueMetric) -> str:
    what = "count" if not metric.is_histogram else f"distribution ({metric.unit})"
    return (
        f"{metric.help}. All-time {what} per organization from {SOURCE}; moves on each "
        "aggregator tick and never decreases: events a correction removed stay counted, and "
        f"{corrections_name(namespace, metric)} says how many."
    )


def _corrections_help(namespace: str, metric: CatalogueMetric) -> str:
    return (
        f"Events that {family_name(namespace, metric)} still counts although aggregator "
        "corrections (deleted or changed source rows) removed them from the rollups; the family "
        f"minus this is the current total in {SOURCE}. Moves on aggregator ticks."
    )


def read_rows(conn: Connection, allowlist: frozenset[str] | None) -> list[TotalsRow]:
    t = metric_totals
    query = select(
        t.c.organization_id,
        t.c.metric_name,
        t.c.monotonic_value,
        t.c.monotonic_count,
        t.c.monotonic_buckets,
        t.c.total_count,
    )
    if allowlist is not None:
        query = query.where(t.c.organization_id.in_(sorted(allowlist)))
    return [
        (org, name, float(value), int(count), buckets, int(true_count))
        for org, name, value, count, buckets, true_count in conn.execute(query)
    ]


def select_orgs(rows: Sequence[TotalsRow], top_n: int) -> set[str] | None:
    """The organizations to expose under the top-N limit (None: all), by all-time activity:
    events across every metric; ties go to the smaller id so the set is stable."""
    if not top_n:
        return None
    activity: dict[str, int] = {}
    for org, _name, _value, count, _buckets, _true in rows:
        activity[org] = activity.get(org, 0) + int(count)
    ranked = sorted(activity, key=lambda org: (-activity[org], org))
    return set(ranked[:top_n])


def build(rows: Iterable[TotalsRow], config: MetricsConfig) -> tuple[Metric, ...]:
    rows = list(rows)
    keep = select_orgs(rows, config.top_n)
    by_metric: dict[str, list[TotalsRow]] = {}
    for row in rows:
        if keep is None or row[0] in keep:
            by_metric.setdefault(row[1], []).append(row)
    ns = config.namespace
    families: list[Metric] = []
    for metric in CATALOGUE:
        series = sorted(by_metric.get(metric.name, ()))
        corrections = CounterMetricFamily(
            corrections_name(ns, metric), _corrections_help(ns, metric), labels=["organization"]
        )
        if metric.is_histogram:
            family: Metric = _histogram(ns, metric, series)
        else:
            counter = CounterMetricFamily(
                family_name(ns, metric), _help(ns, metric), labels=["organization"]
            )
            for org, _name, _value, count, _buckets, _true in series:
                counter.add_metric([org], int(count))
            family = counter
        for org, _name, _value, count, _buckets, true_count in series:
            corrections.add_metric([org], max(0, int(count) - int(true_count)))
        families += [family, corrections]
    return tuple(families)


def _histogram(ns: str, metric: CatalogueMetric, series: Sequence[TotalsRow]) -> Metric:
    family = HistogramMetricFamily(
        family_name(ns, metric), _help(ns, metric), labels=["organization"]
    )
    bounds = [floatToGoString(b) for b in metric.buckets] + ["+Inf"]
    for org, _name, value, _count, raw, _true in series:
        per_bucket = json.loads(raw) if raw else []
        if len(per_bucket) != len(bounds):
            continue  # stored with another bucket layout: not expressible with these bounds
        cumulative, running = [], 0
        for bound, count in zip(bounds, per_bucket, strict=True):
            running += int(count)
            cumulative.append((bound, running))
        family.add_metric([org], cumulative, sum_value=float(value))
    return family


@dataclass(frozen=True)
class Built:
    version: int
    families: tuple[Metric, ...]


class UsageCache:
    """The families of the newest totals version this replica has seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: Built | None = None

    def families(self, conn: Connection, version: int, config: MetricsConfig) -> tuple[Metric, ...]:
        with self._lock:
            built = self._built
        if built is not None and built.version == version:
            return built.families
        families = build(read_rows(conn, config.allowlist), config)
        with self._lock:
            self._built = Built(version, families)
        return families
