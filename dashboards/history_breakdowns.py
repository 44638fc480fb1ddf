"""The breakdowns on the Usage history dashboard: LLM cost and tokens by model, runs by workflow
and by deployment, and the pushed metrics by the dimensions each carries, from the breakdown
tiers (event_metrics_breakdown_*), names from Unstract's tables. The /metrics labels are opt-in;
the rollups always hold the breakdowns.

A breakdown row holds '' for a dimension its events have no value for: such rows show as
'(none)' in the series and with an empty id in the tables.
"""

from __future__ import annotations

from collections.abc import Sequence

from dashboard_metrics.core.catalogue import Dimension, Metric
from dashboard_metrics.core.schema import BREAKDOWN, NO_VALUE
from dashboard_metrics.dashboards.breakdowns import (
    BY_DEPLOYMENT,
    BY_MODEL,
    BY_WORKFLOW,
    carried,
    with_pushed,
)
from dashboard_metrics.dashboards.common import (
    ROLLUPS,
    AnyPanel,
    Sections,
    panel_unit,
    table_panel,
    timeseries_panel,
)
from dashboard_metrics.dashboards.sql import Sql
from dashboard_metrics.dashboards.tiered import ORGS, TIER_RULE, picked, source_table

# Each dimension's names, as columns over the joins NAME_JOINS adds (one row per id at most).
NAME_COLUMNS = {
    Dimension.WORKFLOW: {"workflow_name": "w.workflow_name"},
    Dimension.DEPLOYMENT: {
        "deployment_name": "COALESCE(a.display_name, p.pipeline_name)",
        "deployment_type": "CASE WHEN a.id IS NOT NULL THEN 'API' ELSE p.pipeline_type END",
    },
}
NAME_JOINS = {
    Dimension.WORKFLOW: (
        f"LEFT JOIN {source_table('workflow')} AS w ON w.id::text = picked.workflow\n"
    ),
    Dimension.DEPLOYMENT: (
        f"LEFT JOIN {source_table('api_deployment')} AS a ON a.id::text = picked.deployment\n"
        f"LEFT JOIN {source_table('pipeline')} AS p ON p.id::text = picked.deployment\n"
    ),
}


def series_sql(metric: Metric, dimension: Dimension) -> str:
    """``metric`` per value of ``dimension`` over the range, from the tier the range selects."""
    carried([metric], dimension)
    rows = picked(
        f"COALESCE(NULLIF({dimension}, '{NO_VALUE}'), '(none)') AS metric, metric_value AS value",
        f"metric_name = '{metric.name}' AND {ORGS}",
        BREAKDOWN,
    )
    return f"SELECT time, metric, SUM(value) AS value FROM {rows}\nGROUP BY 1, 2\nORDER BY 1, 2"


def table_sql(metrics: Sequence[Metric], dimension: Dimension) -> str:
    """A row per value of ``dimension`` with its names, a column per metric: the range's sums."""
    carried(metrics, dimension)
    names = ", ".join(f"'{m.name}'" for m in metrics)
    rows = picked(
        f"{dimension}, metric_name, metric_value AS value",
        f"metric_name IN ({names}) AND {ORGS}",
        BREAKDOWN,
    )
    columns = [f"picked.{dimension} AS {dimension}"]
    columns += [f"MAX({sql}) AS {name}" for name, sql in NAME_COLUMNS[dimension].items()]
    columns += [
        f"COALESCE(SUM(value) FILTER (WHERE metric_name = '{m.name}'), 0) AS \"{m.name}\""
        for m in metrics
    ]
    select = ",\n  ".join(columns)
    first = 2 + len(NAME_COLUMNS[dimension])
    return (
        f"SELECT\n  {select}\nFROM {rows}\n{NAME_JOINS[dimension]}"
        f"GROUP BY 1\nORDER BY {first} DESC, 1"
    )


def _series(metric: Metric) -> AnyPanel:
    what = (
        f"{metric.help[0].lower()}{metric.help[1:]} ({metric.unit or 'value'})"
        if metric.pushed
        else f"the {metric.unit} of the LLM calls"
    )
    return timeseries_panel(
        f"{metric.name} by model",
        f"{what[0].upper()}{what[1:]} per hour, day or month ({TIER_RULE}) and model, "
        "selected organizations summed (breakdown tiers).",
        panel_unit(metric),
        [Sql(series_sql(metric, Dimension.MODEL))],
        datasource=ROLLUPS,
        stacked=True,
        bars=True,
    )


def _table(title: str, dimension: Dimension, metrics: Sequence[Metric], what: str) -> AnyPanel:
    return table_panel(
        title,
        f"Per {what} over the range (the tier it selects: {TIER_RULE}), selected organizations: "
        + ", ".join(f"{m.name} ({m.unit})" if m.unit else m.name for m in metrics)
        + ". Names from Unstract's tables (schema ${source_schema}).",
        "short",
        [Sql(table_sql(metrics, dimension)).table()],
        datasource=ROLLUPS,
        overrides={m.name: panel_unit(m) for m in metrics},
    )


def sections() -> Sections:
    return {
        "By model": [_series(m) for m in with_pushed(BY_MODEL, Dimension.MODEL)],
        "By workflow and deployment": [
            _table(
                "By workflow",
                Dimension.WORKFLOW,
                with_pushed(BY_WORKFLOW, Dimension.WORKFLOW),
                "workflow",
            ),
            _table(
                "By deployment",
                Dimension.DEPLOYMENT,
                with_pushed(BY_DEPLOYMENT, Dimension.DEPLOYMENT),
                "API deployment or pipeline",
            ),
        ],
    }
