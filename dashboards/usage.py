"""Usage overview: Unstract's frontend (summary cards, trend chart, breakdown, table) in Grafana.

One panel per catalogue entry in each section, so a new metric appears without editing this file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from grafana_foundation_sdk.models import dashboard as md

from dashboard_metrics.core.catalogue import CATALOGUE, Metric
from dashboard_metrics.dashboards import breakdowns
from dashboard_metrics.dashboards.common import (
    AnyPanel,
    Sections,
    bargauge_panel,
    merged_columns,
    organization_variable,
    panel_unit,
    piechart_panel,
    prometheus_variable,
    promql,
    ref_ids,
    render,
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
        return f"the sum of {metric.unit or 'values'} ({metric.help})"
    return f"the number of {metric.unit or 'events'} ({metric.help})"


def build(
    namespace: str = DEFAULT_NAMESPACE, metrics: Sequence[Metric] = CATALOGUE
) -> md.Dashboard:
    return render(
        UID,
        "dashboard-metrics / Usage overview",
        "Usage per organization from the dashboard-metrics /metrics endpoint: totals over the "
        "selected range, trends, the breakdown by metric and by organization, a table per "
        "organization, and tables by workflow and deployment (those need "
        "DASHBOARD_METRICS_METRICS_DIMENSIONS). For months and years use the Usage history "
        "dashboard.",
        [prometheus_variable(), organization_variable(org_selector(namespace))],
        sections(namespace, metrics),
    )


def sections(namespace: str, metrics: Sequence[Metric]) -> Sections:
    def over(m: Metric, window: str, by: str = "") -> str:
        return selected(value_series(m, namespace), window, by=by)

    return {
        "Totals over the selected range": [
            stat_panel(
                m.name.replace("_", " ").capitalize(),
                f"Over the selected time range, {what(m)}; selected organizations summed.",
                panel_unit(m),
                [promql(over(m, "$__range"), instant=True)],
            )
            for m in metrics
        ],
        "Trends": [
            timeseries_panel(
                f"{m.name} by organization",
                f"Per interval and organization, {what(m)}. Stacked: the top is the total.",
                panel_unit(m),
                [promql(over(m, "$__interval", by="organization"), legend="{{organization}}")],
                stacked=True,
            )
            for m in metrics
        ],
        "Breakdown": [
            breakdown(metrics, lambda m: over(m, "$__range")),
            *(
                piechart_panel(
                    f"{m.name}: share by organization",
                    f"Each organization's share of {what(m)} over the selected range.",
                    panel_unit(m),
                    [
                        promql(
                            over(m, "$__range", by="organization"),
                            legend="{{organization}}",
                            instant=True,
                        )
                    ],
                )
                for m in metrics
            ),
        ],
        "Per organization": [
            per_organization(
                "Organizations",
                "One row per organization, one column per metric: totals over the selected range.",
                metrics,
                lambda m: over(m, "$__range", by="organization"),
            ),
            per_organization(
                "Last hour per organization",
                "One row per organization, one column per metric: the trailing hour at the end "
                "of the range, from the recording rules organization:<series>:increase1h.",
                metrics,
                lambda m: f"{hourly_rule(m, namespace)}{{{ORG}}}",
            ),
        ],
        "By workflow": breakdowns.by_workflow(namespace),
        "By deployment": breakdowns.by_deployment(namespace),
        # Pushed metrics kept by model (the built-in ones are on the LLM cost dashboard).
        **({"By model": by_model} if (by_model := breakdowns.pushed_by_model(namespace)) else {}),
    }


def breakdown(metrics: Sequence[Metric], expression: Callable[[Metric], str]) -> AnyPanel:
    """One bar per metric, each in its own unit."""
    refs = ref_ids(len(metrics))
    return bargauge_panel(
        "Breakdown by metric",
        "Every metric over the selected range for the selected organizations (each in its unit).",
        "short",
        [
            promql(expression(m), legend=m.name, ref=ref, instant=True)
            for m, ref in zip(metrics, refs, strict=True)
        ],
        width=24,
        height=10,
        query_units={ref: panel_unit(m) for m, ref in zip(metrics, refs, strict=True)},
    )


def per_organization(
    title: str, description: str, metrics: Sequence[Metric], expression: Callable[[Metric], str]
) -> AnyPanel:
    """A table with a row per organization and a column per metric."""
    refs = ref_ids(len(metrics))
    return table_panel(
        title,
        description,
        "short",
        [
            promql(expression(m), legend=m.name, ref=ref, instant=True, fmt="table")
            for m, ref in zip(metrics, refs, strict=True)
        ],
        transformations=merged_columns({ref: m.name for m, ref in zip(metrics, refs, strict=True)}),
        overrides={m.name: panel_unit(m) for m in metrics},
    )
