"""Recomputing dirty buckets exactly, inside one locked rollup transaction.

A dirty hour is recomputed from the source tables while the hourly tier still covers it, and
the difference between its new and stored rows is added to its day and month. Hours the
hourly tier no longer covers make their whole day dirty (recomputed from source, its
difference added to the month); days the daily tier no longer covers make their whole month
dirty (recomputed from source). Every source read of one transaction sees one snapshot, so the
tiers stay mutually consistent, and each equals a from-scratch computation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.engine import Connection

from aggregator import sourcesql, store
from aggregator.rollup_tables import DAILY, HOURLY, MONTHLY, Granularity
from aggregator.timeutil import DAY, HOUR, day_start, merge_ranges, month_of, next_month
from aggregator.values import Agg, Rollup, RowKey, add_into, as_datetime


@dataclass(frozen=True)
class Coverage:
    """Which buckets each tier still holds (retention) and trusts."""

    hourly_from: datetime
    daily_from: date
    untrusted_hour_days: frozenset[date] = frozenset()

    @classmethod
    def at(
        cls,
        now: datetime,
        hourly_days: int,
        daily_days: int,
        untrusted: Iterable[date] = (),
        hourly_deleted_before: datetime | None = None,
        daily_deleted_before: date | None = None,
    ) -> Coverage:
        """Coverage at ``now``; a cleanup run with a shorter retention than configured deleted
        rows up to ``*_deleted_before``, so those buckets are no longer covered either."""
        hourly_from = now - timedelta(days=hourly_days)
        daily_from = (now - timedelta(days=daily_days)).date()
        if hourly_deleted_before is not None:
            hourly_from = max(hourly_from, hourly_deleted_before)
        if daily_deleted_before is not None:
            daily_from = max(daily_from, daily_deleted_before)
        return cls(hourly_from, daily_from, frozenset(untrusted))

    def hour_retained(self, hour: datetime) -> bool:
        return hour >= self.hourly_from

    def hour_covered(self, hour: datetime) -> bool:
        """Retained and trusted: its stored row is what its day and month have absorbed."""
        return self.hour_retained(hour) and hour.date() not in self.untrusted_hour_days

    def day_covered(self, day: date) -> bool:
        return day >= self.daily_from


@dataclass
class Plan:
    hours: set[datetime] = field(default_factory=set)
    days: set[date] = field(default_factory=set)
    months: set[date] = field(default_factory=set)

    @classmethod
    def for_dirty_hours(cls, dirty: Iterable[datetime], coverage: Coverage) -> Plan:
        plan = cls()
        for hour in dirty:
            day = hour.date()
            if not coverage.day_covered(day):
                plan.months.add(month_of(day))
            elif coverage.hour_covered(hour):
                plan.hours.add(hour)
            else:
                plan.days.add(day)
                if coverage.hour_retained(hour):  # refresh the row; its day is recomputed whole
                    plan.hours.add(hour)
        return plan

    def __bool__(self) -> bool:
        return bool(self.hours or self.days or self.months)


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


def day_ranges(days: Iterable[date]) -> list[tuple[date, date]]:
    return [(a.date(), b.date()) for a, b in merge_ranges([day_start(d) for d in days], DAY)]


def month_ranges(months: Iterable[date]) -> list[tuple[date, date]]:
    ranges: list[tuple[date, date]] = []
    for month in sorted(set(months)):
        if ranges and ranges[-1][1] == month:
            ranges[-1] = (ranges[-1][0], next_month(month))
        else:
            ranges.append((month, next_month(month)))
    return ranges


def as_time_ranges(ranges: list[tuple[date, date]]) -> list[tuple[datetime, datetime]]:
    return [(day_start(a), day_start(b)) for a, b in ranges]


def difference(old: Rollup, new: Rollup) -> dict[RowKey, Agg]:
    zero = Agg(0.0, 0)
    diffs = {}
    for key in old.keys() | new.keys():
        diff = new.get(key, zero) - old.get(key, zero)
        if diff.count or diff.value or any(diff.buckets or ()):
            diffs[key] = diff
    return diffs


def execute(conn: Connection, source: Connection, plan: Plan, stamp: datetime) -> Written:
    """Apply ``plan`` to the rollup tiers (``conn`` holds the write lock)."""
    written = Written()
    day_deltas: Rollup = {}
    month_deltas: Rollup = {}

    if plan.hours:
        ranges = merge_ranges(list(plan.hours), HOUR)
        new = sourcesql.compute(source, Granularity.HOUR, ranges)
        old = store.read(conn, HOURLY, ranges)
        written.hourly += store.merge(conn, HOURLY, old, new, stamp)
        for key, diff in difference(old, new).items():
            day = as_datetime(key.period).date()
            if day not in plan.days:
                add_into(day_deltas, key._replace(period=day), diff)
                if month_of(day) not in plan.months:
                    add_into(month_deltas, key._replace(period=month_of(day)), diff)

    if plan.days:
        ranges_d = day_ranges(plan.days)
        new = sourcesql.compute(source, Granularity.DAY, as_time_ranges(ranges_d))
        old = store.read(conn, DAILY, ranges_d)
        written.daily += store.merge(conn, DAILY, old, new, stamp)
        for key, diff in difference(old, new).items():
            month = month_of(key.period)
            if month not in plan.months:
                add_into(month_deltas, key._replace(period=month), diff)

    if day_deltas:
        ranges_d = day_ranges({key.period for key in day_deltas})
        written.daily += store.apply_deltas(conn, DAILY, day_deltas, ranges_d, stamp)

    if plan.months:
        ranges_m = month_ranges(plan.months)
        new = sourcesql.compute(source, Granularity.MONTH, as_time_ranges(ranges_m))
        old = store.read(conn, MONTHLY, ranges_m)
        written.monthly += store.merge(conn, MONTHLY, old, new, stamp)

    if month_deltas:
        ranges_m = month_ranges({key.period for key in month_deltas})
        written.monthly += store.apply_deltas(conn, MONTHLY, month_deltas, ranges_m, stamp)
    return written
