"""The rollup schema we own, in one place: the tier tables (one row per organization,
period, metric, project and tag), the breakdown tiers beside them (one row per organization,
period, metric and dimension values), the all-time totals, the writer's state and the attribution
it last saw. The migrations under ``migrations/`` create it; they are frozen copies and never
import this module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Date,
    Float,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    false,
    or_,
)
from sqlalchemy.types import TypeEngine

from dashboard_metrics.core.sqltypes import UTCDateTime

rollup_metadata = MetaData()


def _tier_table(name: str, period: str, period_type: TypeEngine[Any], *key: Column[Any]) -> Table:
    """A tier's table: one row per organization, period, metric and the ``key`` columns."""
    return Table(
        name,
        rollup_metadata,
        Column("organization_id", Text, nullable=False),
        Column(period, period_type, nullable=False),
        Column("metric_name", String(64), nullable=False),
        Column("metric_type", String(16), nullable=False),
        Column("metric_value", Float, nullable=False),
        Column("metric_count", BigInteger, nullable=False),
        Column("buckets", Text, nullable=True),
        *key,
        Column("created_at", UTCDateTime, nullable=False),
        Column("modified_at", UTCDateTime, nullable=False),
        PrimaryKeyConstraint(
            "organization_id", period, "metric_name", *(c.name for c in key), name=f"{name}_pkey"
        ),
        Index(f"ix_{name}_{period}", period),
    )


def _rollup_table(name: str, period: str, period_type: TypeEngine[Any]) -> Table:
    table = _tier_table(
        name,
        period,
        period_type,
        Column("project", String(64), nullable=False, server_default="default"),
        Column("tag", String(64), nullable=False, server_default=""),
    )
    Index(f"ix_{name}_metric_{period}", table.c.metric_name, table.c[period])
    return table


event_metrics_hourly = _rollup_table("event_metrics_hourly", "timestamp", UTCDateTime())
event_metrics_daily = _rollup_table("event_metrics_daily", "date", Date())
event_metrics_monthly = _rollup_table("event_metrics_monthly", "month", Date())

# A breakdown row's dimension values; '' where the event has none (a null in the API) or the
# metric does not carry the dimension.
BREAKDOWN_DIMS = ("model", "workflow", "deployment")
NO_VALUE = ""


def _breakdown_table(name: str, period: str, period_type: TypeEngine[Any]) -> Table:
    # Retention deletes by period. Readers always name the organization (the primary key's
    # first column); no (metric, period) index: a backfill writes millions of rows.
    return _tier_table(
        name,
        period,
        period_type,
        *(Column(dim, Text, nullable=False, server_default=NO_VALUE) for dim in BREAKDOWN_DIMS),
    )


event_metrics_breakdown_hourly = _breakdown_table(
    "event_metrics_breakdown_hourly", "timestamp", UTCDateTime()
)
event_metrics_breakdown_daily = _breakdown_table("event_metrics_breakdown_daily", "date", Date())
event_metrics_breakdown_monthly = _breakdown_table(
    "event_metrics_breakdown_monthly", "month", Date()
)

aggregator_state = Table(
    "aggregator_state",
    rollup_metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


# The attribution columns (organization, pipeline type) each workflow, pipeline and API
# deployment had when a tick last saw it: a change moves its executions' events (changes.py).
source_attribution = Table(
    "source_attribution",
    rollup_metadata,
    Column("source_table", String(64), nullable=False),
    Column("row_id", String(64), nullable=False),
    Column("attribution", Text, nullable=False),
    PrimaryKeyConstraint("source_table", "row_id", name="source_attribution_pkey"),
)


# Accepted pushed events (migration 0006), one per (organization, id), kept for retention and
# for the ids; and their sums per ingest transaction, organization, hour, metric and labels, the
# partials the tick folds into every tier (core/eventstore.py writes both in one transaction).
# Not declared here: the partials' commit-order column, ``commit_xid`` (xid8, PostgreSQL) or
# ``seq`` (AUTOINCREMENT, SQLite); aggregator/events.py reads it.
pushed_events = Table(
    "pushed_events",
    rollup_metadata,
    Column("organization_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("metric_name", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("event_time", UTCDateTime, nullable=False),
    *(Column(dim, Text, nullable=False, server_default=NO_VALUE) for dim in BREAKDOWN_DIMS),
    Column("received_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("organization_id", "event_id", name="pushed_events_pkey"),
    Index("ix_pushed_events_event_time", "event_time"),
)
pushed_event_partials = Table(
    "pushed_event_partials",
    rollup_metadata,
    Column("organization_id", Text, nullable=False),
    Column("hour", UTCDateTime, nullable=False),
    Column("metric_name", String(64), nullable=False),
    *(Column(dim, Text, nullable=False, server_default=NO_VALUE) for dim in BREAKDOWN_DIMS),
    Column("metric_value", Float, nullable=False),
    Column("metric_count", BigInteger, nullable=False),
    Column("buckets", Text, nullable=True),
    Index("ix_pushed_event_partials_hour", "hour"),
)


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


ORG_DIMS = ("project", "tag")


@dataclass(frozen=True)
class Tier:
    name: str
    table: Table
    period_column: str
    granularity: Granularity
    # The key columns after organization, period and metric: project and tag for the
    # organization rows, the dimensions for the breakdowns.
    dims: tuple[str, ...] = ORG_DIMS

    @property
    def period(self) -> Column[object]:
        return self.table.c[self.period_column]

    @property
    def is_breakdown(self) -> bool:
        return self.dims == BREAKDOWN_DIMS


HOURLY = Tier("hourly", event_metrics_hourly, "timestamp", Granularity.HOUR)
DAILY = Tier("daily", event_metrics_daily, "date", Granularity.DAY)
MONTHLY = Tier("monthly", event_metrics_monthly, "month", Granularity.MONTH)
TIERS = {tier.name: tier for tier in (HOURLY, DAILY, MONTHLY)}

BREAKDOWN_HOURLY = Tier(
    "hourly", event_metrics_breakdown_hourly, "timestamp", Granularity.HOUR, BREAKDOWN_DIMS
)
BREAKDOWN_DAILY = Tier(
    "daily", event_metrics_breakdown_daily, "date", Granularity.DAY, BREAKDOWN_DIMS
)
BREAKDOWN_MONTHLY = Tier(
    "monthly", event_metrics_breakdown_monthly, "month", Granularity.MONTH, BREAKDOWN_DIMS
)
BREAKDOWN_TIERS = {
    tier.name: tier for tier in (BREAKDOWN_HOURLY, BREAKDOWN_DAILY, BREAKDOWN_MONTHLY)
}


@dataclass(frozen=True)
class Family:
    """Three tiers kept together: the organization rows, or the breakdowns. Every writer
    keeps both families of a bucket in the same transaction, so they share one coverage."""

    hourly: Tier
    daily: Tier
    monthly: Tier

    @property
    def tiers(self) -> tuple[Tier, Tier, Tier]:
        return (self.hourly, self.daily, self.monthly)

    def tier(self, name: str) -> Tier:
        return {t.name: t for t in self.tiers}[name]


ORGANIZATION = Family(HOURLY, DAILY, MONTHLY)
BREAKDOWN = Family(BREAKDOWN_HOURLY, BREAKDOWN_DAILY, BREAKDOWN_MONTHLY)
FAMILIES = (ORGANIZATION, BREAKDOWN)

Ranges = Sequence[tuple[Any, Any]]


def in_ranges(column: ColumnElement[Any], ranges: Ranges) -> ColumnElement[bool]:
    """SQL: ``column`` lies in one of the half-open ``ranges`` [start, end) (none: false). For
    a tier's periods and for source timestamps alike."""
    if not ranges:
        return false()
    return or_(*(and_(column >= start, column < end) for start, end in ranges))


# Bumped whenever a refresh changes any row: serve replicas rebuild their families only then.
TOTALS_VERSION = "metric_totals_version"


def _totals_table(name: str, *key: Column[Any]) -> Table:
    return Table(
        name,
        rollup_metadata,
        *key,
        Column("metric_type", String(16), nullable=False),
        # Monthly rows behind the total: a deleted monthly row leaves no modified_at behind,
        # but it changes this count.
        Column("month_rows", BigInteger, nullable=False),
        Column("total_value", Float, nullable=False),
        Column("total_count", BigInteger, nullable=False),
        Column("total_buckets", Text, nullable=True),
        Column("monotonic_value", Float, nullable=False),
        Column("monotonic_count", BigInteger, nullable=False),
        Column("monotonic_buckets", Text, nullable=True),
        Column("corrected_at", UTCDateTime, nullable=True),
        Column("modified_at", UTCDateTime, nullable=False),
        PrimaryKeyConstraint(*(column.name for column in key), name=f"{name}_pkey"),
    )


metric_totals = _totals_table(
    "metric_totals",
    Column("organization_id", Text, nullable=False),
    Column("metric_name", String(64), nullable=False),
)
# The refresh finds the monthly rows its transaction wrote by their stamp (migration 0002).
ix_event_metrics_monthly_modified_at = Index(
    "ix_event_metrics_monthly_modified_at", event_metrics_monthly.c.modified_at
)

# All-time totals per (organization, metric, model, workflow, deployment) from the monthly
# breakdown tier, kept like metric_totals (aggregator/totals.py): /metrics sums the monotonic
# values of the label set it exposes. A row whose true total fell to zero stays, so its
# monotonic value survives a label moving away (a usage row's model edited).
metric_breakdown_totals = _totals_table(
    "metric_breakdown_totals",
    Column("organization_id", Text, nullable=False),
    Column("metric_name", String(64), nullable=False),
    *(Column(dim, Text, nullable=False, server_default=NO_VALUE) for dim in BREAKDOWN_DIMS),
)
# The refresh finds the breakdown rows its transaction wrote by their stamp (migration 0005).
ix_event_metrics_breakdown_monthly_modified_at = Index(
    "ix_event_metrics_breakdown_monthly_modified_at", event_metrics_breakdown_monthly.c.modified_at
)
