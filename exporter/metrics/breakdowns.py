"""Dimension labels on the usage families (DASHBOARD_METRICS_METRICS_DIMENSIONS), their series
cap (DASHBOARD_METRICS_METRICS_MAX_SERIES) and the info families that carry the names.

A labelled series is the sum of the monotonic totals in metric_breakdown_totals over the
dimensions it does not show: a sum of non-decreasing values never decreases, and a key whose
events moved elsewhere keeps its row (aggregator/totals.py). A family whose labelled series
would exceed the cap is exposed as without dimensions (the organization series of
metric_totals), and `dashboard_metrics_metrics_series_capped` says so.

Names never become labels of the usage families (a rename would start new series): they reach
Prometheus through `<namespace>_workflow_info` and `<namespace>_deployment_info`, joined in
PromQL with `* on (organization, workflow) group_left (workflow_name)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from sqlalchemy import select
from sqlalchemy.engine import Connection

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import CATALOGUE, Dimension
from dashboard_metrics.core.catalogue import Metric as CatalogueMetric
from dashboard_metrics.core.schema import BREAKDOWN_DIMS, metric_breakdown_totals
from dashboard_metrics.core.values import parse_buckets
from dashboard_metrics.exporter.metrics.config import MetricsConfig
from dashboard_metrics.exporter.metrics.fastrender import Labels, SeriesRow

CAPPED = "dashboard_metrics_metrics_series_capped"
_BATCH = 500

# organization, metric, model, workflow, deployment, monotonic value, monotonic count,
# monotonic buckets (JSON), true count
BreakdownRow = tuple[str, str, str, str, str, float, int, str | None, int]
# workflow id -> name; deployment id -> (name, type: API or the pipeline's type)
WorkflowNames = dict[str, str]
DeploymentNames = dict[str, tuple[str, str]]


def read_breakdowns(conn: Connection, allowlist: frozenset[str] | None) -> list[BreakdownRow]:
    """Every breakdown total, in key order (so every replica sums the same floats alike)."""
    t = metric_breakdown_totals
    key = [t.c.organization_id, t.c.metric_name, *(t.c[d] for d in BREAKDOWN_DIMS)]
    query = select(
        *key, t.c.monotonic_value, t.c.monotonic_count, t.c.monotonic_buckets, t.c.total_count
    ).order_by(*key)
    if allowlist is not None:
        query = query.where(t.c.organization_id.in_(sorted(allowlist)))
    return [
        (r[0], r[1], r[2], r[3], r[4], float(r[5]), int(r[6]), r[7], int(r[8]))
        for r in conn.execute(query)
    ]


def shown_dims(metric: CatalogueMetric, config: MetricsConfig) -> tuple[str, ...]:
    """The dimension labels ``metric``'s families carry: the configured ones it is kept by."""
    return tuple(str(d) for d in config.dimensions if d in metric.dimensions)


@dataclass
class _Sum:
    value: float = 0.0
    count: int = 0
    true: int = 0
    buckets: tuple[int, ...] | None = None
    mixed: bool = False  # bucket layouts disagree: not expressible, left out like org series

    def add(self, row: BreakdownRow) -> None:
        self.value += row[5]
        self.count += row[6]
        self.true += row[8]
        buckets = parse_buckets(row[7])
        if buckets is None:
            return
        if self.buckets is None:
            self.buckets = buckets
        elif len(self.buckets) == len(buckets):
            self.buckets = tuple(a + b for a, b in zip(self.buckets, buckets, strict=True))
        else:
            self.mixed = True


def group(rows: Iterable[BreakdownRow], dims: Sequence[str]) -> list[SeriesRow]:
    """One series per (organization, ``dims`` values): the sums of the rows' totals."""
    at = [BREAKDOWN_DIMS.index(d) + 2 for d in dims]
    sums: dict[tuple[str, ...], _Sum] = {}
    for row in rows:
        key = (row[0], *(str(row[i]) for i in at))
        sums.setdefault(key, _Sum()).add(row)
    out: list[SeriesRow] = []
    for values, cell in sums.items():
        labels: Labels = tuple(sorted(zip(("organization", *dims), values, strict=True)))
        buckets = None if cell.mixed else cell.buckets
        out.append((labels, cell.value, cell.count, buckets, cell.true))
    return sorted(out)


def series_count(metric: CatalogueMetric, label_sets: int) -> int:
    """Prometheus series of a family: a histogram's label set is its buckets, _count and _sum."""
    return label_sets * (metric.bucket_slots + 2 if metric.is_histogram else 1)


@dataclass(frozen=True)
class Selection:
    """What the usage families expose beyond organization, per metric."""

    series: dict[str, list[SeriesRow]]
    labelled: dict[str, tuple[str, ...]]  # metric -> its dimension labels (absent: none)
    capped: dict[str, bool]  # family -> over the cap, for every family the cap applies to
    workflows: frozenset[tuple[str, str]]  # (organization, workflow id) to name
    deployments: frozenset[tuple[str, str]]


def _family(config: MetricsConfig, metric: CatalogueMetric) -> str:
    name = f"{config.namespace}_{metric.prometheus_name}"
    return name if metric.is_histogram else f"{name.removesuffix('_total')}_total"


def select_labelled(
    org_series: Mapping[str, list[SeriesRow]],
    rows: Sequence[BreakdownRow],
    keep: set[str] | None,
    config: MetricsConfig,
) -> Selection:
    """The labelled series of each metric that carries a configured dimension, within the cap;
    the organization series (``org_series``) for the others."""
    kept = [row for row in rows if keep is None or row[0] in keep]
    by_metric: dict[str, list[BreakdownRow]] = {}
    for row in kept:
        by_metric.setdefault(row[1], []).append(row)
    series, labelled, capped = dict(org_series), {}, {}
    for metric in CATALOGUE:
        dims = shown_dims(metric, config)
        if not dims:
            continue
        grouped = group(by_metric.get(metric.name, ()), dims)
        over = series_count(metric, len(grouped)) > config.max_series
        capped[_family(config, metric)] = over
        if not over:
            series[metric.name], labelled[metric.name] = grouped, dims
    workflows = deployments = frozenset[tuple[str, str]]()
    if Dimension.WORKFLOW in config.dimensions:
        workflows = frozenset((row[0], row[3]) for row in kept if row[3])
    if Dimension.DEPLOYMENT in config.dimensions:
        deployments = frozenset((row[0], row[4]) for row in kept if row[4])
    return Selection(series, labelled, capped, workflows, deployments)


def _uuids(ids: Iterable[str]) -> list[str]:
    """The ids that can be Unstract's (uuids), sorted: a pushed event's label may hold any text,
    which has no name there and which the uuid columns would refuse to compare with."""
    kept = set()
    for value in ids:
        try:
            uuid.UUID(value)
        except ValueError:
            continue
        kept.add(value)
    return sorted(kept)


def _batches(ids: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _BATCH):
        yield list(ids[start : start + _BATCH])


def resolve_names(
    conn: Connection, workflows: Iterable[str], deployments: Iterable[str]
) -> tuple[WorkflowNames, DeploymentNames]:
    """Names of the ids from the source tables: workflow.workflow_name; an API deployment's
    display_name (type API), a pipeline's pipeline_name (its pipeline_type)."""
    w, a, p = st.workflow, st.api_deployment, st.pipeline
    names: WorkflowNames = {}
    for batch in _batches(_uuids(workflows)):
        query = select(w.c.id, w.c.workflow_name).where(w.c.id.in_(batch))
        names.update((str(i), n or "") for i, n in conn.execute(query))
    found: DeploymentNames = {}
    for batch in _batches(_uuids(deployments)):
        apis = select(a.c.id, a.c.display_name).where(a.c.id.in_(batch))
        found.update((str(i), (n or "", "API")) for i, n in conn.execute(apis))
        pipes = select(p.c.id, p.c.pipeline_name, p.c.pipeline_type).where(p.c.id.in_(batch))
        found.update((str(i), (n or "", k or "")) for i, n, k in conn.execute(pipes))
    return names, found


def info_families(
    selection: Selection,
    names: tuple[WorkflowNames, DeploymentNames],
    config: MetricsConfig,
    capped: dict[str, bool],
) -> list[Metric]:
    """The info families of the enabled dimensions (ids the source no longer has are left
    out: they have no name to give); ``capped`` gains their cap state."""
    ns, out = config.namespace, []
    workflows, deployments = names
    if Dimension.WORKFLOW in config.dimensions:
        family = InfoMetricFamily(
            f"{ns}_workflow",
            "Names of the workflows the usage families' workflow label holds (from Unstract's "
            "workflow table, read once per aggregator change).",
            labels=["organization", "workflow", "workflow_name"],
        )
        named = [(o, i, workflows[i]) for o, i in sorted(selection.workflows) if i in workflows]
        out.append(_capped_info(family, named, config, capped))
    if Dimension.DEPLOYMENT in config.dimensions:
        family = InfoMetricFamily(
            f"{ns}_deployment",
            "Names and types of the deployments the usage families' deployment label holds: "
            "an API deployment (API) or a pipeline (ETL, TASK, ...), from Unstract's tables.",
            labels=["organization", "deployment", "deployment_name", "deployment_type"],
        )
        rows = [
            (o, i, *deployments[i]) for o, i in sorted(selection.deployments) if i in deployments
        ]
        out.append(_capped_info(family, rows, config, capped))
    return out


def _capped_info(
    family: InfoMetricFamily,
    rows: Sequence[tuple[str, ...]],
    config: MetricsConfig,
    capped: dict[str, bool],
) -> Metric:
    over = len(rows) > config.max_series
    capped[f"{family.name}_info"] = over
    for row in () if over else rows:
        family.add_metric(list(row), {})
    return family


def capped_family(capped: Mapping[str, bool]) -> Metric:
    family = GaugeMetricFamily(
        CAPPED,
        "1 when a /metrics family would exceed DASHBOARD_METRICS_METRICS_MAX_SERIES series with "
        "its dimension labels: a usage family then shows organization series only, an info "
        "family none. One series per family that carries dimension labels.",
        labels=["family"],
    )
    for name, over in sorted(capped.items()):
        family.add_metric([name], 1 if over else 0)
    return family
