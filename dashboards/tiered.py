"""The rollup tier a history panel reads, chosen in PostgreSQL from the dashboard's range.

Exactly as the JSON API's auto source (exporter/api/plan.py ``auto_tier`` on the range's whole
days: up to 7 whole days, i.e. under 8 days, hourly; up to 90 whole days daily; else monthly):
three UNION ALL branches of which only the one whose range condition holds returns rows. The
organization tiers and the breakdown tiers have the same periods, so both read this way.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboard_metrics.core.schema import ORGANIZATION, Family

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
# DASHBOARD_METRICS_SOURCE_SCHEMA: Unstract's tables, where the breakdowns find their names.
SOURCE_SCHEMA_VARIABLE = "source_schema"
DEFAULT_SOURCE_SCHEMA = "unstract"

# Each tier's period as a timestamp, and its rows within the dashboard's range.
_PERIODS = {
    "hourly": ('"timestamp"', '$__timeFilter("timestamp")'),
    "daily": (
        "(\"date\"::timestamp AT TIME ZONE 'UTC')",
        '"date" BETWEEN $__timeFrom()::date AND $__timeTo()::date',
    ),
    "monthly": (
        "(\"month\"::timestamp AT TIME ZONE 'UTC')",
        "\"month\" BETWEEN date_trunc('month', $__timeFrom()::timestamptz)::date "
        "AND $__timeTo()::date",
    ),
}


def table(name: str) -> str:
    return f"${{{SCHEMA_VARIABLE}}}.{name}"


def source_table(name: str) -> str:
    return f"${{{SOURCE_SCHEMA_VARIABLE}}}.{name}"


def schema_variable() -> db.ConstantVariable:
    return (
        db.ConstantVariable(SCHEMA_VARIABLE)
        .description("PostgreSQL schema of the rollup tables (DASHBOARD_METRICS_ROLLUP_SCHEMA)")
        .value(DEFAULT_SCHEMA)
    )


def source_schema_variable() -> db.ConstantVariable:
    return (
        db.ConstantVariable(SOURCE_SCHEMA_VARIABLE)
        .description(
            "PostgreSQL schema of Unstract's tables, for workflow and deployment names "
            "(DASHBOARD_METRICS_SOURCE_SCHEMA; the rollup database must reach them)"
        )
        .value(DEFAULT_SOURCE_SCHEMA)
    )


def picked(columns: str, where: str, family: Family = ORGANIZATION) -> str:
    """``time, <columns>`` of the rows matching ``where`` in the tier the range selects, as a
    subquery named ``picked`` (``columns`` name no period: the time is the tier's)."""
    branches = []
    for tier in family.tiers:
        period, in_range = _PERIODS[tier.name]
        conditions = " AND ".join([in_range, *TIER_CONDITIONS[tier.name], where])
        branches.append(
            f"  SELECT {period} AS time, {columns}\n"
            f"  FROM {table(tier.table.name)}\n"
            f"  WHERE {conditions}\n"
        )
    return "(\n" + "  UNION ALL\n".join(branches) + ") AS picked"
