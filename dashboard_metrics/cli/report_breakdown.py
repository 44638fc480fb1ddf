"""The breakdowns of `report`: the top LLM models by cost and the top workflows by documents over
the window, from the breakdown tiers.

They read the pieces of the same plan as the totals (the breakdown tiers share the organization
tiers' coverage: every writer keeps both in one transaction), and the live pieces from the
source tables, so each list sums to its metric's total whenever every event has a value.
Workflow names are resolved at read time from the source, as the API does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, cast, func, select
from sqlalchemy.engine import Connection, Engine

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core import sourcesql
from dashboard_metrics.core.catalogue import Dimension, metric
from dashboard_metrics.core.schema import BREAKDOWN, NO_VALUE, Granularity, Ranges, in_ranges
from dashboard_metrics.core.values import BreakdownKey
from dashboard_metrics.exporter.api.plan import ReadPlan

TOP = 5


@dataclass(frozen=True)
class Top:
    """A ranking: its key in --json, its words in the text, the metric and the dimension."""

    key: str
    title: str
    metric: str
    dimension: Dimension


TOPS = (
    Top("models_by_cost", "top models by LLM cost", "llm_usage", Dimension.MODEL),
    Top(
        "workflows_by_documents",
        "top workflows by documents",
        "documents_processed",
        Dimension.WORKFLOW,
    ),
)


def _tier_sums(conn: Connection, org: str, plan: ReadPlan, top: Top) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    pieces: tuple[Ranges, ...] = (plan.hours, plan.days, plan.months)
    for tier, ranges in zip(BREAKDOWN.tiers, pieces, strict=True):
        if not ranges:
            continue
        table, dim = tier.table, tier.table.c[top.dimension.value]
        query = (
            select(dim, func.sum(table.c.metric_value))
            .where(
                table.c.organization_id == org,
                table.c.metric_name == top.metric,
                in_ranges(tier.period, ranges),
            )
            .group_by(dim)
        )
        for value, total in conn.execute(query):
            sums[value] += total
    return sums


def _live_sums(conn: Connection, org: str, plan: ReadPlan, top: Top) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    rollup = sourcesql.compute(conn, Granularity.HOUR, plan.live, org, [top.metric], breakdown=True)
    for key, agg in rollup.items():
        if isinstance(key, BreakdownKey) and key.metric_name == top.metric:
            sums[getattr(key, top.dimension.value)] += agg.value
    return sums


def workflow_names(conn: Connection, ids: Sequence[str]) -> dict[str, str]:
    wanted = [i for i in ids if i != NO_VALUE]
    if not wanted:
        return {}
    w = st.workflow
    query = select(cast(w.c.id, Text), w.c.workflow_name).where(cast(w.c.id, Text).in_(wanted))
    return {str(i): name for i, name in conn.execute(query)}


def ranked(sums: dict[str, float], top: Top, names: dict[str, str]) -> list[dict[str, Any]]:
    """The largest first (ties by id); '' (no value) is null, as in the API."""
    best = sorted((item for item in sums.items() if item[1]), key=lambda i: (-i[1], i[0]))[:TOP]
    out: list[dict[str, Any]] = []
    for value, total in best:
        entry: dict[str, Any] = {top.dimension.value: value or None, "value": total}
        if top.dimension is Dimension.WORKFLOW:
            entry["workflow_name"] = names.get(value)
        out.append(entry)
    return out


def gather(rollup: Engine, source: Engine, org: str, plan: ReadPlan) -> dict[str, list[Any]]:
    """Each ranking of TOPS for one organization over the plan's pieces."""
    out: dict[str, list[Any]] = {}
    for top in TOPS:
        with rollup.connect() as conn:
            sums = _tier_sums(conn, org, plan, top)
        names: dict[str, str] = {}
        with source.connect() as conn:
            if plan.live:
                for value, total in _live_sums(conn, org, plan, top).items():
                    sums[value] += total
            if top.dimension is Dimension.WORKFLOW:
                names = workflow_names(conn, list(sums))
        out[top.key] = ranked(sums, top, names)
    return out


def label(top: Top, entry: dict[str, Any]) -> str:
    """One entry as text: the name (or the id), then the amount in the metric's unit."""
    value = entry[top.dimension.value]
    name = entry.get("workflow_name") or value or "(none)"
    unit = metric(top.metric).unit
    amount = f"${entry['value']:,.4f}" if unit == "USD" else f"{entry['value']:,.0f}"
    return f"{name} {amount}"


def text_lines(breakdowns: dict[str, list[Any]]) -> list[str]:
    return [
        f"  {top.title}: "
        + (" · ".join(label(top, e) for e in breakdowns.get(top.key, [])) or "none")
        for top in TOPS
    ]
