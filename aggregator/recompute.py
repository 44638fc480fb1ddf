"""Recomputing dirty buckets exactly, inside one locked rollup transaction.

A dirty hour is recomputed from the source tables while the hourly tier keeps it. A day whose
hours changed is then rebuilt as the sum of its stored hours, and a month whose days changed as
the sum of its stored days: every row is a fresh sum of what it covers, never a stored value plus
a difference (differences accumulate float cancellation, and re-add changes another writer, such
as a backfill, already counted). Where the lower tier no longer holds a whole day (the hourly
retention edge, hours a backfill skipped) the day is recomputed from the source; likewise a month
the daily tier no longer holds whole. Every source read of one transaction sees one snapshot, so
the tiers stay mutually consistent, and each equals a from-scratch computation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Connection

from dashboard_metrics.aggregator import store
from dashboard_metrics.core import eventsql, sourcesql
from dashboard_metrics.core.coverage import Coverage
from dashboard_metrics.core.schema import FAMILIES, Family, Granularity, Tier
from dashboard_metrics.core.timeutil import (
    DAY,
    HOUR,
    day_start,
    merge_ranges,
    month_of,
    month_ranges,
)
from dashboard_metrics.core.values import Key, Rollup, as_datetime


@dataclass
class Plan:
    """Buckets to recompute from the source: hours the hourly tier keeps, days it does not hold
    whole, months beyond the daily tier. Days and months above changed hours or days are
    rebuilt from the tier below."""

    hours: set[datetime] = field(default_factory=set)
    days: set[date] = field(default_factory=set)
    months: set[date] = field(default_factory=set)
    # Days whose day and month rows are rebuilt for every organization even if no hour below
    # changed: a backfill that skipped a tier may have written a pending change into the
    # tiers below it only.
    rebuild: set[date] = field(default_factory=set)

    @classmethod
    def for_dirty_hours(
        cls, dirty: Iterable[datetime], coverage: Coverage, rebuild: Iterable[date] = ()
    ) -> Plan:
        plan = cls(rebuild={day for day in rebuild if coverage.day_covered(day)})
        for hour in dirty:
            day = hour.date()
            if not coverage.day_covered(day):
                plan.months.add(month_of(day))
                continue
            if coverage.hour_retained(hour):
                plan.hours.add(hour)
            if not coverage.day_from_hours(day):
                plan.days.add(day)
        return plan

    def __bool__(self) -> bool:
        return bool(self.hours or self.days or self.months or self.rebuild)


@dataclass
class Written:
    hourly: int = 0
    daily: int = 0
    monthly: int = 0

    @property
    def total(self) -> int:
        return self.hourly + self.daily + self.monthly

    def as_dict(self) -> dict[str, int]:
        return {"hourly": self.hourly, "daily": self.daily, "monthly": self.monthly}

    def __add__(self, other: Written) -> Written:
        return Written(
            self.hourly + other.hourly, self.daily + other.daily, self.monthly + other.monthly
        )


def day_ranges(days: Iterable[date]) -> list[tuple[date, date]]:
    return [(a.date(), b.date()) for a, b in merge_ranges([day_start(d) for d in days], DAY)]


def as_time_ranges(ranges: list[tuple[date, date]]) -> list[tuple[datetime, datetime]]:
    return [(day_start(a), day_start(b)) for a, b in ranges]


def _rebuild(
    conn: Connection,
    lower: Tier,
    upper: Tier,
    periods: set[date],
    series: set[store.Series] | None,
    span: Callable[[Iterable[date]], list[tuple[date, date]]],
    stamp: datetime,
) -> set[Key]:
    """Rewrite ``upper``'s rows of ``periods`` as sums of ``lower``'s stored rows: of the
    ``series`` whose lower rows changed (None: every series), so a tick reads what changed,
    not the whole month of every organization it touched. Returns the keys that changed."""
    ranges = span(periods)
    lower_ranges = as_time_ranges(ranges) if lower.granularity is Granularity.HOUR else ranges
    new = store.sums(conn, lower, upper, lower_ranges, series=series)
    old = store.read(conn, upper, ranges, series=series)
    return store.merge(conn, upper, old, new, stamp)


@dataclass
class EventRows:
    """The pushed metrics' rows for one transaction's recomputes: both families from one read
    of the events per bucket span (the two families recompute the same spans)."""

    events_from: datetime  # the oldest event kept: older buckets keep their pushed rows
    _read: dict[tuple[Granularity, tuple[Any, ...]], tuple[Rollup, Rollup]] = field(
        default_factory=dict
    )

    def first(self, tier: Tier) -> datetime:
        return eventsql.first_whole_bucket(self.events_from, tier.granularity)

    def rows(self, conn: Connection, tier: Tier, ranges: list[tuple[datetime, datetime]]) -> Rollup:
        clipped = eventsql.clip(ranges, self.first(tier))
        span = (tier.granularity, tuple(clipped))
        if span not in self._read:
            self._read[span] = eventsql.compute_families(conn, tier.granularity, clipped)
        organization, breakdown = self._read[span]
        return breakdown if tier.is_breakdown else organization


def _from_source(
    conn: Connection,
    source: Connection,
    tier: Tier,
    ranges: list[tuple[datetime, datetime]],
    stamp: datetime,
    events: EventRows,
    stored_ranges: list[tuple[Any, Any]] | None = None,
) -> set[Key]:
    """Recompute ``tier``'s buckets in ``ranges``: the built-in metrics from the source, the
    pushed ones from the events kept (in the rollup database: ``conn``)."""
    new = sourcesql.compute(source, tier.granularity, ranges, breakdown=tier.is_breakdown)
    new.update(events.rows(conn, tier, ranges))
    first = events.first(tier)
    old = store.read(conn, tier, stored_ranges or ranges)
    old = {key: agg for key, agg in old.items() if not eventsql.kept_by_events(key, first)}
    return store.merge(conn, tier, old, new, stamp)


def execute(
    conn: Connection, source: Connection, plan: Plan, coverage: Coverage, stamp: datetime
) -> Written:
    """Apply ``plan`` to both families of rollup tiers, the organization rows and the
    breakdowns (``conn`` holds the write lock)."""
    written = Written()
    events = EventRows(coverage.events_from)
    for family in FAMILIES:
        written += execute_family(conn, source, plan, coverage, stamp, family, events)
    return written


def execute_family(
    conn: Connection,
    source: Connection,
    plan: Plan,
    coverage: Coverage,
    stamp: datetime,
    family: Family,
    events: EventRows | None = None,
) -> Written:
    """Apply ``plan`` to one family's tiers. A family rebuilds the days and months above the
    rows it changed itself: a moved dimension changes breakdown rows and no organization row."""
    hourly, daily, _monthly = family.tiers
    written = Written()
    events = events or EventRows(coverage.events_from)
    # Days whose hours changed, rebuilt from them; months whose days changed. For a forced
    # rebuild, every organization.
    days = {d for d in plan.rebuild - plan.days if coverage.day_from_hours(d)}
    months = {month_of(d) for d in plan.rebuild}
    day_series: set[store.Series] | None = None if plan.rebuild else set()
    month_series: set[store.Series] | None = None if plan.rebuild else set()

    if plan.hours:
        hours = merge_ranges(list(plan.hours), HOUR)
        changed = _from_source(conn, source, hourly, hours, stamp, events)
        written.hourly += len(changed)
        for key in changed:
            day = as_datetime(key.period).date()
            if day not in plan.days and coverage.day_from_hours(day):
                days.add(day)
                if day_series is not None:
                    day_series.add(store.series_of(key))

    changed_days: set[Key] = set()
    if plan.days:
        ranges_d = day_ranges(plan.days)
        changed_days |= _from_source(
            conn, source, daily, as_time_ranges(ranges_d), stamp, events, ranges_d
        )
    if days:
        changed_days |= _rebuild(conn, hourly, daily, days, day_series, day_ranges, stamp)
    written.daily += len(changed_days)
    for key in changed_days:
        months.add(month_of(key.period))
        if month_series is not None:
            month_series.add(store.series_of(key))

    written.monthly += _months(
        conn, source, plan, coverage, stamp, family, events, months, month_series
    )
    return written


def _months(
    conn: Connection,
    source: Connection,
    plan: Plan,
    coverage: Coverage,
    stamp: datetime,
    family: Family,
    events: EventRows,
    months: set[date],
    series: set[store.Series] | None,
) -> int:
    """The family's months: from the source where the daily tier does not hold them whole,
    else rebuilt from their days (of ``series`` only, when given). Returns rows written."""
    from_source = plan.months | {m for m in months if not coverage.month_from_days(m)}
    from_days = months - from_source
    written = 0
    if from_source:
        ranges = month_ranges(from_source)
        time_ranges = as_time_ranges(ranges)
        written += len(
            _from_source(conn, source, family.monthly, time_ranges, stamp, events, ranges)
        )
    if from_days:
        written += len(
            _rebuild(conn, family.daily, family.monthly, from_days, series, month_ranges, stamp)
        )
    return written
