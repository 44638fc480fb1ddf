"""Which rollup tier answers which part of a range, exactly, or a clear 400.

A range of whole UTC hours is cut into whole months (monthly tier), whole days (daily tier) and
the remaining hours (hourly tier), down from the chosen base tier. Each piece must lie where its
tier is complete (retention, cleanups, untrusted hourly days). The partial first and last day of
a daily or monthly range that the hourly tier no longer holds (under a day each) is computed
from the source tables ("live" pieces), so long ranges with arbitrary bounds stay exact;
anything else no tier can answer fails with 400 rather than returning short numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from dashboard_metrics.core.coverage import Coverage
from dashboard_metrics.core.timeutil import DAY, day_start, month_of, next_month
from dashboard_metrics.exporter.api.errors import invalid
from dashboard_metrics.exporter.api.params import DateRange

ORDER = ("hourly", "daily", "monthly")
GRANULARITY_TIER = {"hour": "hourly", "day": "daily", "week": "daily", "month": "monthly"}


class NotCovered(Exception):
    pass


@dataclass
class ReadPlan:
    source: str
    hours: list[tuple[datetime, datetime]] = field(default_factory=list)
    days: list[tuple[date, date]] = field(default_factory=list)
    months: list[tuple[date, date]] = field(default_factory=list)
    # Hours read from the source tables: edges of a range shorter than a day (see above).
    live: list[tuple[datetime, datetime]] = field(default_factory=list)

    @property
    def only_hours(self) -> bool:
        return not self.days and not self.months and not self.live


def _cut_hours(plan: ReadPlan, start: datetime, end: datetime, coverage: Coverage) -> None:
    if start >= end:
        return
    if start < coverage.hourly_from:
        raise NotCovered(
            f"the hourly tier holds complete data only from {coverage.hourly_from.isoformat()}"
        )
    day = start.date()
    while day_start(day) < end:
        if day in coverage.untrusted_hour_days:
            raise NotCovered(f"the hourly tier of {day.isoformat()} is not complete")
        day += DAY
    plan.hours.append((start, end))


def _cut_edge(plan: ReadPlan, start: datetime, end: datetime, coverage: Coverage) -> None:
    """Hours of a partial day: from the hourly tier, else from the source tables."""
    if start >= end:
        return
    try:
        _cut_hours(plan, start, end, coverage)
    except NotCovered:
        assert end - start < DAY
        plan.live.append((start, end))


Cutter = Callable[[ReadPlan, datetime, datetime, Coverage], None]


def whole_days(start: datetime, end: datetime) -> tuple[date, date]:
    """[first, last): the whole UTC days within [start, end) (none when first >= last)."""
    first = start.date() if start == day_start(start.date()) else start.date() + DAY
    return first, end.date()  # days before end.date() end by `end`


def _cut_days(plan: ReadPlan, start: datetime, end: datetime, coverage: Coverage) -> None:
    first, last = whole_days(start, end)
    if first >= last:  # no whole day: at most one midnight inside, each side under a day
        midnight = max(start, min(end, day_start(end.date())))
        _cut_edge(plan, start, midnight, coverage)
        _cut_edge(plan, midnight, end, coverage)
        return
    if not coverage.day_covered(first):
        raise NotCovered(
            f"the daily tier holds complete data only from {coverage.daily_from.isoformat()}"
        )
    _cut_edge(plan, start, day_start(first), coverage)
    plan.days.append((first, last))
    _cut_edge(plan, day_start(last), end, coverage)


def cut_months(
    plan: ReadPlan, start: datetime, end: datetime, coverage: Coverage, cut_days: Cutter
) -> None:
    """The whole UTC months of [start, end) to the monthly tier, the rest to ``cut_days``."""
    first = month_of(start)
    if day_start(first) < start:
        first = next_month(first)
    last = month_of(end)
    if first >= last:
        cut_days(plan, start, end, coverage)
        return
    cut_days(plan, start, day_start(first), coverage)
    plan.months.append((first, last))
    cut_days(plan, day_start(last), end, coverage)


def _cut_months(plan: ReadPlan, start: datetime, end: datetime, coverage: Coverage) -> None:
    cut_months(plan, start, end, coverage, _cut_days)


def build(base: str, start: datetime, end: datetime, coverage: Coverage) -> ReadPlan:
    plan = ReadPlan(base)
    {"hourly": _cut_hours, "daily": _cut_days, "monthly": _cut_months}[base](
        plan, start, end, coverage
    )
    return plan


def auto_tier(days: int) -> str:
    """Unstract's thresholds on the whole days of the range."""
    if days <= 7:
        return "hourly"
    return "daily" if days <= 90 else "monthly"


def choose(rng: DateRange, source: str, granularity: str | None, coverage: Coverage) -> ReadPlan:
    """The plan for ``source`` (auto: Unstract's thresholds, then coarser tiers if needed)."""
    finest_allowed = ORDER.index(GRANULARITY_TIER[granularity]) if granularity else len(ORDER) - 1
    if rng.tz is not UTC:
        # Local days and weeks need hours: the daily and monthly tiers hold UTC days (whole-hour
        # offsets were checked by parse_range).
        finest_allowed = 0
        if source not in {"auto", "hourly"}:
            raise invalid(
                "source",
                f"source={source} holds UTC days; a time zone other than UTC needs the hourly "
                "tier (source=hourly or auto).",
            )
    if source != "auto":
        if ORDER.index(source) > finest_allowed:
            raise invalid("source", f"source={source} is too coarse for granularity={granularity}.")
        candidates = [source]
    else:
        first = min(ORDER.index(auto_tier(rng.days)), finest_allowed)
        candidates = list(ORDER[first : finest_allowed + 1])
    reason = ""
    for tier in candidates:
        try:
            return build(tier, rng.first_hour, rng.end_hour, coverage)
        except NotCovered as exc:
            reason = str(exc)
    attr = "source" if source != "auto" else "start_date"
    raise invalid(
        attr,
        f"No rollup tier can answer this range exactly: {reason}. Narrow the range, align it to "
        "whole days or months, or use the live-* endpoints.",
    )
