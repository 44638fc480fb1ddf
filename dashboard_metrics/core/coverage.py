"""Which buckets each rollup tier holds completely, and trusts, at a given time: the writer
plans recomputes by it and the readers choose their tiers by it. Below, what retention keeps of
each tier (`RETENTION`), the table the writer's cleanups run from."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dashboard_metrics.core import state
from dashboard_metrics.core.schema import DAILY, HOURLY, Granularity, Tier
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import day_start

EVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Coverage:
    """Which buckets each tier still holds (retention) and trusts."""

    hourly_from: datetime
    daily_from: date
    untrusted_hour_days: frozenset[date] = frozenset()
    # The oldest pushed event kept (events retention): buckets from here on are computed from
    # the events; older ones keep their pushed rows (core/eventsql.py).
    events_from: datetime = EVER

    @classmethod
    def at(
        cls,
        now: datetime,
        hourly_days: int,
        daily_days: int,
        untrusted: Iterable[date] = (),
        hourly_deleted_before: datetime | None = None,
        daily_deleted_before: date | None = None,
        events_days: int | None = None,
        events_deleted_before: datetime | None = None,
    ) -> Coverage:
        """Coverage at ``now``; a cleanup run with a shorter retention than configured deleted
        rows up to ``*_deleted_before``, so those buckets are no longer covered either."""
        hourly_from = now - timedelta(days=hourly_days)
        daily_from = (now - timedelta(days=daily_days)).date()
        if hourly_deleted_before is not None:
            hourly_from = max(hourly_from, hourly_deleted_before)
        if daily_deleted_before is not None:
            daily_from = max(daily_from, daily_deleted_before)
        events_from = EVER
        if events_days is not None:
            events_from = now - timedelta(days=events_days)
        if events_deleted_before is not None:
            events_from = max(events_from, events_deleted_before)
        return cls(hourly_from, daily_from, frozenset(untrusted), events_from)

    def hour_retained(self, hour: datetime) -> bool:
        return hour >= self.hourly_from

    def day_covered(self, day: date) -> bool:
        return day >= self.daily_from

    def day_from_hours(self, day: date) -> bool:
        """The hourly tier holds all of ``day``, trusted: the day is the sum of its hours."""
        return day_start(day) >= self.hourly_from and day not in self.untrusted_hour_days

    def month_from_days(self, month: date) -> bool:
        """The daily tier holds all of ``month``: the month is the sum of its days."""
        return month >= self.daily_from


def parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def coverage_at(settings: Settings, stored: dict[str, Any], now: datetime) -> Coverage:
    """What each tier holds completely at ``now``, from the aggregator_state values: the
    retention settings, cleanups run with a shorter retention, untrusted hourly days."""
    hourly_floor = stored.get(state.HOURLY_DELETED_BEFORE)
    daily_floor = stored.get(state.DAILY_DELETED_BEFORE)
    return Coverage.at(
        now,
        settings.hourly_retention_days,
        settings.daily_retention_days,
        [date.fromisoformat(d) for d in stored.get(state.HOURLY_UNTRUSTED) or []],
        parse_time(hourly_floor),
        None if daily_floor is None else date.fromisoformat(daily_floor),
        settings.events_retention_days,
        parse_time(stored.get(state.EVENTS_DELETED_BEFORE)),
    )


@dataclass(frozen=True)
class Retention:
    """A tier that retention cleans: when, how far back, and what it records in
    aggregator_state. Monthly rows are kept forever and have none."""

    tier: Tier
    days: Callable[[Settings], int]  # the days the tier keeps
    cleanup_at: Callable[[Settings], str]  # HH:MM (UTC) of the scheduled cleanup
    weekday: int | None  # the scheduled cleanup's weekday (Monday=0); None: every day
    floor_key: str  # a cleanup deleted every row before this period
    untrusted_key: str | None = None  # days whose rows may be incomplete (pruned with them)

    @property
    def last_key(self) -> str:
        """When the scheduled cleanup last ran."""
        return f"last_cleanup:{self.tier.name}"

    def bound(self, cutoff: datetime) -> date:
        """The first period kept when rows older than ``cutoff`` go: an hour or a day."""
        return cutoff if self.tier.granularity is Granularity.HOUR else cutoff.date()

    def parse(self, period: str) -> date:
        """A stored period of this tier (an ISO hour or day)."""
        if self.tier.granularity is Granularity.HOUR:
            return datetime.fromisoformat(period)
        return date.fromisoformat(period)


HOURLY_RETENTION = Retention(
    HOURLY,
    days=lambda s: s.hourly_retention_days,
    cleanup_at=lambda s: s.hourly_cleanup_at,
    weekday=None,
    floor_key=state.HOURLY_DELETED_BEFORE,
    untrusted_key=state.HOURLY_UNTRUSTED,
)
DAILY_RETENTION = Retention(
    DAILY,
    days=lambda s: s.daily_retention_days,
    cleanup_at=lambda s: s.daily_cleanup_at,
    weekday=6,  # Sundays
    floor_key=state.DAILY_DELETED_BEFORE,
)
RETENTION = {r.tier.name: r for r in (HOURLY_RETENTION, DAILY_RETENTION)}
