"""Usage history: months and years from the rollup tables through Grafana's PostgreSQL source.

Prometheus keeps weeks; the rollups keep hourly rows 30 days, daily rows a year and monthly rows
forever. The series panels pick the tier from the dashboard's range exactly as the JSON API does
(exporter/api/plan.py ``auto_tier`` on the range's whole days: up to 7 whole days, i.e. under 8
days, hourly; up to 90 whole days daily; else monthly): three UNION ALL branches of which only
the one whose range condition holds returns rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as md

from dashboard_metrics.core.catalogue import CATALOGUE, Metric
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

UID = "dm-usage-history"
# The API's thresholds, on whole days: a range of 7 days and 23 hours has 7 whole days.
HOURLY_MAX_DAYS = 7
DAILY_MAX_DAYS = 90
RANGE = "($__timeTo()::timestamptz - $__timeFrom()::timestamptz)"


def _whole_days_at_most(days: int) -> str:
    return f"{RANGE} < interval '{days + 1} days'"


def _whole_days_over(days: int) -> str:
    return f"{RANGE} >= interval '{days + 1} days'"


# Each tier's range condition (all must hold): exactly one tier's holds for any range.
TIER_CONDITIONS = {
    "hourly": [_whole_days_at_most(HOURLY_MAX_DAYS)],
    "daily": [_whole_days_over(HOURLY_MAX_DAYS), _whole_days_at_most(DAILY_MAX_DAYS)],
    "monthly": [_whole_days_over(DAILY_MAX_DAYS)],
}
TIER_RULE = "under 8 days hourly, under 91 days daily, else monthly"
ORGS = "organization_id IN ($organization)"
# DASHBOARD_METRICS_ROLLUP_SCHEMA: the rollup tables' schema, a constant the operator can change
# in the dashboard's settings (Grafana's PostgreSQL source has no search_path of its own).
SCHEMA_VARIABLE = "rollup_schema"
DEFAULT_SCHEMA = "dashboard_metrics"


def table(name: str) -> str:
    return f"${{{SCHEMA_VARIABLE}}}.{name}"


def schema_variable() -> db.ConstantVariable:
    return (
        db.ConstantVariable(SCHEMA_VARIABLE)
        .description("PostgreSQL schema of the rollup tables (DASHBOARD_METRICS_ROLLUP_SCHEMA)")
        .value(DEFAULT_SCHEMA)
    )


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
    name = f"metric_name = '{metric.name}' AND {ORGS}"
    [hourly], [past_hourly, daily], [monthly] = TIER_CONDITIONS.values()
    return (
        "SELECT time, organization_id AS metric, SUM(value) AS value FROM (\n"
        '  SELECT "timestamp" AS time, organization_id, metric_value AS value\n'
        f"  FROM {table('event_metrics_hourly')}\n"
        f'  WHERE $__timeFilter("timestamp") AND {hourly} AND {name}\n'
        "  UNION ALL\n"
        "  SELECT (\"date\"::timestamp AT TIME ZONE 'UTC'), organization_id, metric_value\n"
        f"  FROM {table('event_metrics_daily')}\n"
        '  WHERE "date" BETWEEN $__timeFrom()::date AND $__timeTo()::date\n'
        f"    AND {past_hourly}\n"
        f"    AND {daily} AND {name}\n"
        "  UNION ALL\n"
        "  SELECT (\"month\"::timestamp AT TIME ZONE 'UTC'), organization_id, metric_value\n"
        f"  FROM {table('event_metrics_monthly')}\n"
        "  WHERE \"month\" BETWEEN date_trunc('month', $__timeFrom()::timestamptz)::date "
        "AND $__timeTo()::date\n"
        f"    AND {monthly} AND {name}\n"
        ") AS picked\n"
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
        f"the tier the range selects, as the JSON API does: {TIER_RULE}.",
        [rollups_variable(), schema_variable(), sql_organization_variable()],
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
    }
