"""Usage families: one per catalogue metric, from the metric_totals table.

The families of one totals version are built once and shared read-only by every scrape until
the aggregator changes the totals (the version in aggregator_state moves with each change), so
a scrape costs one small state query plus rendering.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from dashboard_metrics.core.catalogue import CATALOGUE
from dashboard_metrics.core.catalogue import Metric as CatalogueMetric
from dashboard_metrics.core.db import first_line
from dashboard_metrics.core.schema import metric_totals
from dashboard_metrics.core.values import parse_buckets
from dashboard_metrics.exporter.metrics import breakdowns, fastrender
from dashboard_metrics.exporter.metrics.buckets import cumulative, le_labels
from dashboard_metrics.exporter.metrics.config import MetricsConfig
from dashboard_metrics.exporter.metrics.fastrender import SeriesRow, TotalsRow

log = logging.getLogger("dashboard_metrics.metrics")

SOURCE = "metric_totals (all-time sums of event_metrics_monthly)"
BREAKDOWN_SOURCE = (
    "metric_breakdown_totals (all-time sums of event_metrics_breakdown_monthly; an empty "
    "label value: the event has none)"
)


def base_name(metric: CatalogueMetric) -> str:
    name = metric.prometheus_name
    return name[: -len("_total")] if name.endswith("_total") else name


def unit_of(metric: CatalogueMetric) -> str:
    """The OpenMetrics unit of a usage family: the catalogue's unit where the family name ends
    with it (`..._cost_usd`, `..._pages`, `..._tokens`), else none (OpenMetrics requires the
    suffix, and renaming a family would break the contract)."""
    unit = metric.unit.lower()
    return unit if base_name(metric).endswith(f"_{unit}") else ""


def family_name(namespace: str, metric: CatalogueMetric) -> str:
    return f"{namespace}_{metric.prometheus_name}"


def corrections_name(namespace: str, metric: CatalogueMetric) -> str:
    return f"{namespace}_{base_name(metric)}_corrections_total"


def _help(namespace: str, metric: CatalogueMetric, dims: Sequence[str] = ()) -> str:
    # A pushed counter adds its events' values (1 unless pushed otherwise); a pushed metric
    # may have no unit.
    what = "sum of the pushed values" if metric.pushed else "count"
    if metric.is_histogram:
        what = f"distribution ({metric.unit})" if metric.unit else "distribution"
    per, source = "organization", SOURCE
    if dims:
        per, source = f"organization and {', '.join(dims)}", BREAKDOWN_SOURCE
    return (
        f"{metric.help}. All-time {what} per {per} from {source}; moves on each "
        "aggregator tick and never decreases: events a correction removed stay counted, and "
        f"{corrections_name(namespace, metric)} says how many."
    )


def _corrections_help(namespace: str, metric: CatalogueMetric, dims: Sequence[str] = ()) -> str:
    return (
        f"Events that {family_name(namespace, metric)} still counts although aggregator "
        "corrections (deleted or changed source rows) removed them from the rollups; the family "
        f"minus this is the current total in {BREAKDOWN_SOURCE if dims else SOURCE}. "
        "Moves on aggregator ticks."
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


def org_series(row: TotalsRow) -> SeriesRow:
    org, _name, value, count, buckets, true_count = row
    return ((("organization", org),), value, count, parse_buckets(buckets), true_count)


def select_series(rows: Iterable[TotalsRow], config: MetricsConfig) -> dict[str, list[SeriesRow]]:
    """The exposed organization series per metric (after the top-N limit), sorted."""
    rows = list(rows)
    keep = select_orgs(rows, config.top_n)
    by_metric: dict[str, list[SeriesRow]] = {}
    for row in rows:
        if keep is None or row[0] in keep:
            by_metric.setdefault(row[1], []).append(org_series(row))
    return {name: sorted(series) for name, series in by_metric.items()}


Names = dict[str, tuple[str, str, str, str, str]]


def family_names(namespace: str, labelled: Mapping[str, Sequence[str]] | None = None) -> Names:
    """metric -> (family name, help, corrections family name, corrections help, unit);
    ``labelled``: the dimension labels each metric's families carry (none: organization)."""
    dims = labelled or {}
    return {
        m.name: (
            family_name(namespace, m),
            _help(namespace, m, dims.get(m.name, ())),
            corrections_name(namespace, m),
            _corrections_help(namespace, m, dims.get(m.name, ())),
            unit_of(m),
        )
        for m in CATALOGUE
    }


def build(rows: Iterable[TotalsRow], config: MetricsConfig) -> tuple[Metric, ...]:
    return families_from(select_series(rows, config), config.namespace)


def families_from(
    by_metric: Mapping[str, list[SeriesRow]],
    ns: str,
    labelled: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Metric, ...]:
    """prometheus_client families of the selected rows (the reference the fast writer matches)."""
    families: list[Metric] = []
    for metric in CATALOGUE:
        name, doc, fix_name, fix_doc, unit = family_names(ns, labelled)[metric.name]
        series = by_metric.get(metric.name, [])
        if metric.is_histogram:
            family = _histogram(name, doc, unit, metric, series)
        else:
            family = CounterMetricFamily(name, doc, unit=unit)
            total = f"{family.name}_total"
            # Samples appended directly: add_metric's per-call work dominated large scrapes.
            # A counter shows the sum of its events' values: their number for the built-in
            # ones (each counts 1), what was pushed for a metrics file's (value defaults to 1).
            family.samples = [Sample(total, dict(r[0]), float(r[1])) for r in series]
        corrections = CounterMetricFamily(fix_name, fix_doc)
        fixed = f"{corrections.name}_total"
        corrections.samples = [
            Sample(fixed, dict(r[0]), float(max(0, r[2] - r[4]))) for r in series
        ]
        families += [family, corrections]
    return tuple(families)


def _histogram(
    name: str, doc: str, unit: str, metric: CatalogueMetric, series: Sequence[SeriesRow]
) -> Metric:
    family = HistogramMetricFamily(name, doc, unit=unit)
    labels = le_labels(metric.buckets)
    bucket, count_name, sum_name = (f"{family.name}_{part}" for part in ("bucket", "count", "sum"))
    samples = family.samples
    for series_labels, value, _count, per_bucket, _true in series:
        if per_bucket is None or len(per_bucket) != len(labels):
            continue  # stored with another bucket layout: not expressible with these bounds
        plain = dict(series_labels)
        running = 0
        for bound, running in cumulative(labels, per_bucket):
            samples.append(Sample(bucket, {**plain, "le": bound}, float(running)))
        samples.append(Sample(count_name, plain, float(running)))
        samples.append(Sample(sum_name, plain, value))
    return family


EOF_LINE = b"# EOF\n"


Encoder = Callable[[Any], bytes]


TEXT_FORMAT = "text/plain; version=0.0.4"
OPENMETRICS_FORMAT = "application/openmetrics-text"


@dataclass(frozen=True)
class Built:
    """The usage series of one totals version and their renderings by content type.

    Rendering tens of thousands of samples costs as much as everything else in a scrape
    together, and between two ticks every scrape would render the same bytes. The two
    Prometheus formats are written directly (`fastrender`); any other goes through
    prometheus_client's encoder over families built on first use.
    """

    version: int
    series: dict[str, list[SeriesRow]]
    namespace: str
    labelled: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # With dimension labels: the info families and the series-cap gauge.
    extra: tuple[Metric, ...] = ()
    capped: frozenset[str] = frozenset()
    complete: bool = True  # False: the names were unreadable; a later scrape builds again
    built_at: float = 0.0
    # The catalogue the series were selected for: installing a metrics file changes it.
    catalogue: tuple[CatalogueMetric, ...] = field(default_factory=lambda: tuple(CATALOGUE))
    rendered: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @functools.cached_property
    def families(self) -> tuple[Metric, ...]:
        return families_from(self.series, self.namespace, self.labelled) + self.extra

    def _encode(self, encoder: Encoder, content_type: str) -> bytes:
        if content_type.startswith((TEXT_FORMAT, OPENMETRICS_FORMAT)):
            openmetrics = content_type.startswith(OPENMETRICS_FORMAT)
            names = family_names(self.namespace, self.labelled)
            body = fastrender.render(self.series, names, openmetrics)
            if self.extra:
                body += encoder(FamiliesCollector(self.extra)).removesuffix(EOF_LINE)
            return body
        # OpenMetrics ends with "# EOF": the service families follow, then the marker.
        return encoder(FamiliesCollector(self.families)).removesuffix(EOF_LINE)

    def render(self, encoder: Encoder, content_type: str) -> bytes:
        with self.lock:  # concurrent scrapes wait for one rendering instead of repeating it
            body = self.rendered.get(content_type)
            if body is None:
                body = self._encode(encoder, content_type)
                self.rendered[content_type] = body
            return body


class FamiliesCollector:
    """A prometheus_client custom collector over families built for a scrape."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class UsageCache:
    """The families of the newest totals version this replica has seen, and the formats
    scrapers asked for (so a new version can be rendered ahead of the next scrape)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: Built | None = None
        self.formats: dict[str, Encoder] = {}

    def get(
        self, conn: Connection, version: int, config: MetricsConfig, source: Engine | None = None
    ) -> Built:
        with self._lock:  # one build per version, however many scrapes arrive meanwhile
            built = self._built
            stale = built is not None and not built.complete
            if stale and built is not None and time.monotonic() - built.built_at < NAMES_RETRY:
                stale = False
            if built is None or built.version != version or stale or _moved(built):
                built = self._build(conn, version, config, source)
                _log_cap(self._built, built, config)
                self._built = built
            return built

    @staticmethod
    def _build(
        conn: Connection, version: int, config: MetricsConfig, source: Engine | None
    ) -> Built:
        rows = read_rows(conn, config.allowlist)
        series = select_series(rows, config)
        if not config.dimensions:
            return Built(version, series, config.namespace)
        breakdown_rows = breakdowns.read_breakdowns(conn, config.allowlist)
        keep = select_orgs(rows, config.top_n)
        selection = breakdowns.select_labelled(series, breakdown_rows, keep, config)
        names, complete = _names(source, selection)
        capped = dict(selection.capped)
        extra = breakdowns.info_families(selection, names, config, capped)
        extra.append(breakdowns.capped_family(capped))
        return Built(
            version,
            selection.series,
            config.namespace,
            selection.labelled,
            tuple(extra),
            frozenset(name for name, over in capped.items() if over),
            complete,
            time.monotonic(),
        )

    def render(self, built: Built, encoder: Encoder, content_type: str) -> bytes:
        self.formats[content_type] = encoder
        return built.render(encoder, content_type)


def _moved(built: Built) -> bool:
    """The catalogue is no longer the one ``built`` was selected for (a tuple comparison checks
    identity first: a microsecond per scrape)."""
    return built.catalogue != tuple(CATALOGUE)


NAMES_RETRY = 30.0  # seconds between attempts to read names while the source is unreachable


def _names(
    source: Engine | None, selection: breakdowns.Selection
) -> tuple[tuple[breakdowns.WorkflowNames, breakdowns.DeploymentNames], bool]:
    """Names of the workflows and deployments the selection shows, and whether they were read."""
    if not (selection.workflows or selection.deployments):
        return ({}, {}), True
    if source is None:
        return ({}, {}), False
    try:
        with source.connect() as conn:
            found = breakdowns.resolve_names(
                conn,
                (i for _o, i in selection.workflows),
                (i for _o, i in selection.deployments),
            )
    except SQLAlchemyError as exc:
        log.warning(
            "metrics: workflow and deployment names unavailable",
            extra={"fields": {"error": first_line(exc)}},
        )
        return ({}, {}), False
    return found, True


def _log_cap(before: Built | None, after: Built, config: MetricsConfig) -> None:
    """One log line when the set of capped families changes (not on every scrape)."""
    old = before.capped if before is not None else frozenset()
    if after.capped == old:
        return
    log.warning(
        "metrics: series cap",
        extra={
            "fields": {
                "max_series": config.max_series,
                "capped": sorted(after.capped),
                "released": sorted(old - after.capped),
            }
        },
    )
