"""overview/ answers any valid range, as Unstract's does (issue 12): whole months from the
monthly tier (kept forever), whole days from the daily tier where it holds them, hours from the
hourly tier where it holds them, and every other hour from the source tables ("live" pieces).

`plan.choose` stays the rule for the other endpoints (a clear 400 when no tier covers a part);
this planner is used by overview/ only when `choose` finds no tier that covers the range.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard_metrics.core.coverage import Coverage
from dashboard_metrics.core.timeutil import DAY, add_range, day_start
from dashboard_metrics.exporter.api.params import EARLIEST, LATEST, DateRange
from dashboard_metrics.exporter.api.plan import ReadPlan, cut_months, whole_days

# Every valid range (parse_range's max_range for overview/ and workflow-token-usage/).
ANY_RANGE = timedelta(days=(LATEST - EARLIEST).days + 1)


def _hours(plan: ReadPlan, start: datetime, end: datetime, coverage: Coverage) -> None:
    """Hours the hourly tier holds (retained, trusted) from it, the others from the source."""
    if start >= end:
        return
    split = min(end, max(start, coverage.hourly_from))
    add_range(plan.live, start, split)
    # Only the (few) untrusted days break the hourly piece: walking every day instead held the
    # event loop for seconds on ranges that reach millennia ahead (issue 9).
    for day in sorted(coverage.untrusted_hour_days):
        low, high = max(split, day_start(day)), min(end, day_start(day + DAY))
        if low < high:
            add_range(plan.hours, split, low)
            add_range(plan.live, low, high)
            split = high
    add_range(plan.hours, split, end)


def _days(plan: ReadPlan, start: datetime, end: datetime, coverage: Coverage) -> None:
    first, last = whole_days(start, end)
    if first >= last:
        _hours(plan, start, end, coverage)
        return
    _hours(plan, start, day_start(first), coverage)
    held = min(last, max(first, coverage.daily_from))  # the daily tier holds [held, last)
    _hours(plan, day_start(first), day_start(held), coverage)
    if held < last:
        plan.days.append((held, last))
    _hours(plan, day_start(last), end, coverage)


def build_any(rng: DateRange, coverage: Coverage) -> ReadPlan:
    start, end = rng.first_hour, rng.end_hour
    if rng.tz is not UTC:  # local days need hours (see plan.choose)
        plan = ReadPlan("hourly")
        _hours(plan, start, end, coverage)
        return plan
    plan = ReadPlan("monthly")
    cut_months(plan, start, end, coverage, _days)
    return plan
