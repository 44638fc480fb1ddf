"""Usage history: months and years from the rollup tables through Grafana's PostgreSQL source.

Prometheus keeps weeks; the rollups keep hourly rows 30 days, daily rows a year and monthly rows
forever. The series panels and the breakdowns pick the tier from the dashboard's range exactly as
the JSON API does (dashboards/tiered.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as md

from dashboard_metrics.core.catalogue import CATALOGUE, Metric
from dashboard_metrics.dashboards import history_breakdowns
from dashboard_metrics.dashboards.common import (
    ROLLUPS,
    Sections,
    panel_unit,
    render,
    rollups_variable,
    table_panel,
    timeseries_panel,
)
from dashboard_metrics.dashboards.sql import Sql
from dashboard_metrics.dashboards.tiered import (
    ORGS,
    TIER_RULE,
    picked,
    schema_variable,
    source_schema_variable,
    table,
)
from dashboard_metrics.dashboards.tiered import (
    TIER_CONDITIONS as TIER_CONDITIONS,  # the tests read it here
)

UID = "dm-usage-history"


def sql_organization_variable() -> db.QueryVariable:
    query = f"SELECT DISTINCT organization_id FROM {table('event_metrics_monthly')} ORDER BY 1"
    return (
        db.QueryVariable("organization")
        .label("Organization")
        .description("Organizations (string ids) with rollup rows; All selects every one")
        .datasource(ROLLUPS)
        .query(query)
        .definition(query)
        .refresh(md.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(md.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(md.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def tiered_series_sql(metric: Metric) -> str:
    """One metric per organization over the range, from the tier the range selects."""
    rows = picked(
        "organization_id, metric_value AS value", f"metric_name = '{metric.name}' AND {ORGS}"
    )
    return (
        f"SELECT time, organization_id AS metric, SUM(value) AS value FROM {rows}\n"
        "GROUP BY 1, 2\n"
        "ORDER BY 1, 2"
    )


def pivot(metrics: Sequence[Metric]) -> str:
    """One column per metric (names come from the catalogue, never from input)."""
    return ",\n".join(
        f"  COALESCE(SUM(metric_value) FILTER (WHERE metric_name = '{m.name}'), 0) AS \"{m.name}\""
        for m in metrics
    )


def monthly_sql(metrics: Sequence[Metric], label: str, period: str, by_org: bool) -> str:
    org_column = "organization_id AS organization,\n" if by_org else ""
    groups = "1, 2" if by_org else "1"
    return (
        f"SELECT {period} AS {label},\n{org_column}{pivot(metrics)}\n"
        f"FROM {table('event_metrics_monthly')}\n"
        "WHERE \"month\" BETWEEN date_trunc('month', $__timeFrom()::timestamptz)::date "
        f"AND $__timeTo()::date AND {ORGS}\n"
        f"GROUP BY {groups}\n"
        f"ORDER BY {groups}"
    )


MONTH = "to_char(\"month\", 'YYYY-MM')"
YEAR = "to_char(\"month\", 'YYYY')"
# The totals tables: title, description, period column and its expression, per organization,
# height.
TOTALS = (
    (
        "Per month",
        "Every metric per calendar month (UTC) over the range, selected organizations summed "
        "(monthly rollups, kept forever).",
        ("month", MONTH),
        False,
        10,
    ),
    (
        "Per year",
        "Every metric per calendar year (UTC) over the range, selected organizations summed.",
        ("year", YEAR),
        False,
        6,
    ),
    (
        "Per month and organization",
        "Every metric per calendar month and organization over the range.",
        ("month", MONTH),
        True,
        12,
    ),
)


def build(metrics: Sequence[Metric] = CATALOGUE) -> md.Dashboard:
    return render(
        UID,
        "dashboard-metrics / Usage history",
        "Months and years of usage from the rollup tables (PostgreSQL data source). Series use "
        f"the tier the range selects, as the JSON API does: {TIER_RULE}. The breakdowns (by model, "
        "workflow and deployment) read the breakdown tiers, names from Unstract's tables.",
        [
            rollups_variable(),
            schema_variable(),
            source_schema_variable(),
            sql_organization_variable(),
        ],
        sections(metrics),
        time_from="now-1y",
    )


def sections(metrics: Sequence[Metric]) -> Sections:
    units = {m.name: panel_unit(m) for m in metrics}
    return {
        "Totals": [
            table_panel(
                title,
                description,
                "short",
                [Sql(monthly_sql(metrics, label, period, by_org)).table()],
                datasource=ROLLUPS,
                height=height,
                overrides=units,
            )
            for title, description, (label, period), by_org, height in TOTALS
        ],
        "Series (tier chosen by the range)": [
            timeseries_panel(
                f"{m.name} by organization",
                f"{m.help}; per hour, day or month depending on the range ({TIER_RULE}), "
                "per organization.",
                units[m.name],
                [Sql(tiered_series_sql(m))],
                datasource=ROLLUPS,
                stacked=True,
                bars=True,
            )
            for m in metrics
        ],
        **history_breakdowns.sections(),
    }
