"""Usage overview: the anchor's frontend (summary cards, trend chart, breakdown, table) in Grafana.

One panel per catalogue entry in each section, so a new metric appears without editing this file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from grafana_foundation_sdk.models import dashboard as md

from dashboard_metrics.core.catalogue import CATALOGUE, Metric
from dashboard_metrics.dashboards.common import (
    Board,
    bargauge_panel,
    merged_columns,
    organization_variable,
    panel_unit,
    piechart_panel,
    prometheus_variable,
    promql,
    ref_ids,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from dashboard_metrics.dashboards.promql import DEFAULT_NAMESPACE, ORG, selected, value_series
from dashboard_metrics.dashboards.rules import hourly_rule

UID = "dm-usage-overview"


def org_selector(namespace: str) -> str:
    return f'{{__name__=~"{namespace}_.+"}}'


def what(metric: Metric) -> str:
    if metric.is_histogram:
        return f"the sum of {metric.unit} ({metric.help})"
    return f"the number of {metric.unit} ({metric.help})"


def build(
    namespace: str = DEFAULT_NAMESPACE, metrics: Sequence[Metric] = CATALOGUE
) -> md.Dashboard:
    board = Board(
        UID,
        "dashboard-metrics / Usage overview",
        "Usage per organization from the dashboard-metrics /metrics endpoint: totals over the "
        "selected range, trends, the breakdown by metric and by organization, and a table per "
        "organization. For months and years use the Usage history dashboard.",
        [prometheus_variable(), organization_variable(org_selector(namespace))],
    )

    board.row("Totals over the selected range")
    for metric in metrics:
        board.add(
            stat_panel(
                metric.name.replace("_", " ").capitalize(),
                f"Over the selected time range, {what(metric)}; selected organizations summed.",
                panel_unit(metric),
                [promql(selected(value_series(metric, namespace), "$__range"), instant=True)],
            )
        )

    board.row("Trends")
    for metric in metrics:
        board.add(
            timeseries_panel(
                f"{metric.name} by organization",
                f"Per interval and organization, {what(metric)}. Stacked: the top is the total.",
                panel_unit(metric),
                [
                    promql(
                        selected(value_series(metric, namespace), "$__interval", by="organization"),
                        legend="{{organization}}",
                    )
                ],
                stacked=True,
            )
        )

    board.row("Breakdown")
    refs = ref_ids(len(metrics))
    breakdown = bargauge_panel(
        "Breakdown by metric",
        "Every metric over the selected range for the selected organizations (each in its unit).",
        "short",
        [
            promql(
                selected(value_series(m, namespace), "$__range"),
                legend=m.name,
                ref=ref,
                instant=True,
            )
            for m, ref in zip(metrics, refs, strict=True)
        ],
        width=24,
        height=10,
    )
    for metric, ref in zip(metrics, refs, strict=True):
        breakdown = breakdown.override_by_query(
            ref, [md.DynamicConfigValue("unit", panel_unit(metric))]
        )
    board.add(breakdown)
    for metric in metrics:
        board.add(
            piechart_panel(
                f"{metric.name}: share by organization",
                f"Each organization's share of {what(metric)} over the selected range.",
                panel_unit(metric),
                [
                    promql(
                        selected(value_series(metric, namespace), "$__range", by="organization"),
                        legend="{{organization}}",
                        instant=True,
                    )
                ],
            )
        )

    board.row("Per organization")

    def per_organization(title: str, description: str, expression: Callable[[Metric], str]) -> None:
        board.add(
            table_panel(
                title,
                description,
                "short",
                [
                    promql(expression(m), legend=m.name, ref=ref, instant=True, fmt="table")
                    for m, ref in zip(metrics, refs, strict=True)
                ],
                transformations=merged_columns(
                    {ref: m.name for m, ref in zip(metrics, refs, strict=True)}
                ),
                overrides={m.name: panel_unit(m) for m in metrics},
            )
        )

    per_organization(
        "Organizations",
        "One row per organization, one column per metric: totals over the selected range.",
        lambda m: selected(value_series(m, namespace), "$__range", by="organization"),
    )
    per_organization(
        "Last hour per organization",
        "One row per organization, one column per metric: the trailing hour at the end of "
        "the range, from the recording rules organization:<series>:increase1h.",
        lambda m: f"{hourly_rule(m, namespace)}{{{ORG}}}",
    )
    return board.build()
