"""The pure parts of a tick and of retention: what to do from what was read.

No database: each part takes the stored state and the rows read, and returns what to write.
Schedules are checked by stepping a fake clock, never by sleeping.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from dashboard_metrics.aggregator.engine import (
    TickResult,
    cleanup_state,
    cleanups_due,
    plan_tick,
    reconcile_due,
    requested_hours,
    tick_state,
)
from dashboard_metrics.core import state
from dashboard_metrics.core.schema import DAILY_RETENTION, HOURLY_RETENTION, RETENTION, TIERS
from dashboard_metrics.core.settings import Settings
from tests.harness import FakeClock, utc

SETTINGS = Settings(database_url="sqlite://")


# -- schedules ------------------------------------------------------------------------------------


def test_reconciliation_is_due_once_a_day_at_its_time() -> None:
    clock = FakeClock(utc(2026, 3, 10, 4, 0))
    stored: dict[str, Any] = {}
    runs: list[datetime] = []
    for _ in range(3 * 24 * 6):  # three days in 10-minute steps
        if reconcile_due(SETTINGS, stored, clock()):
            runs.append(clock())
            stored[state.LAST_RECONCILE] = clock().isoformat()
        clock.advance(minutes=10)
    # Never run before: due at once; then at the first step past 04:40 each day.
    assert runs == [utc(2026, 3, 10, 4, 0)] + [utc(2026, 3, d, 4, 40) for d in (10, 11, 12)]


def test_cleanups_run_hourly_tier_daily_and_daily_tier_on_sundays() -> None:
    clock = FakeClock(utc(2026, 3, 2, 0, 30))  # a Monday
    stored: dict[str, Any] = {}
    runs: dict[str, list[datetime]] = {"hourly": [], "daily": []}
    for _ in range(14 * 24):
        for retention in cleanups_due(SETTINGS, stored, clock()):
            runs[retention.tier.name].append(clock())
            stored[retention.last_key] = clock().isoformat()
        clock.advance(hours=1)
    # Never run: both due at the first tick; then at 02:00 daily and Sundays at 03:00.
    assert runs["hourly"] == [utc(2026, 3, 2, 0, 30)] + [
        utc(2026, 3, d, 2, 30) for d in range(2, 16)
    ]
    assert runs["daily"] == [
        utc(2026, 3, 2, 0, 30),
        utc(2026, 3, 8, 3, 30),
        utc(2026, 3, 15, 3, 30),
    ]


def test_the_retention_table_covers_the_tiers_that_retention_cleans() -> None:
    assert set(RETENTION) == {"hourly", "daily"}
    assert all(TIERS[name] is r.tier for name, r in RETENTION.items())
    assert HOURLY_RETENTION.days(SETTINGS) == SETTINGS.hourly_retention_days
    assert DAILY_RETENTION.days(SETTINGS) == SETTINGS.daily_retention_days
    assert HOURLY_RETENTION.floor_key == state.HOURLY_DELETED_BEFORE
    assert DAILY_RETENTION.floor_key == state.DAILY_DELETED_BEFORE
    assert HOURLY_RETENTION.untrusted_key == state.HOURLY_UNTRUSTED


# -- a tick ---------------------------------------------------------------------------------------


def test_plan_tick_joins_changes_requests_and_the_reconciled_days() -> None:
    now = utc(2026, 3, 10, 12, 30)
    changed = {utc(2026, 3, 10, 9)}
    stored = {
        state.RECOMPUTE_REQUESTS: [[utc(2026, 3, 9, 1).isoformat(), utc(2026, 3, 9, 3).isoformat()]]
    }
    assert requested_hours(stored) == {utc(2026, 3, 9, 1), utc(2026, 3, 9, 2)}

    work = plan_tick(SETTINGS, stored, changed, now, reconcile=False)
    assert work.dirty == {utc(2026, 3, 10, 9), utc(2026, 3, 9, 1), utc(2026, 3, 9, 2)}
    assert work.plan.hours == work.dirty
    assert work.plan.rebuild == {date(2026, 3, 9)}  # requested days rebuild their day and month
    assert work.plan_counts == {"hours": 3, "days": 0, "months": 0}

    reconciled = plan_tick(SETTINGS, {}, changed, now, reconcile=True)
    week = {utc(2026, 3, 3, 12) + timedelta(hours=h) for h in range(SETTINGS.reconcile_days * 24)}
    assert week | changed <= reconciled.dirty  # the last RECONCILE_DAYS days, every hour
    assert min(reconciled.dirty) == utc(2026, 3, 3, 12)


def test_plan_tick_sends_hours_beyond_retention_to_the_tier_that_keeps_them() -> None:
    now = utc(2026, 3, 10, 12)
    old_hour = now - timedelta(days=SETTINGS.hourly_retention_days + 1)
    ancient = now - timedelta(days=SETTINGS.daily_retention_days + 40)
    work = plan_tick(SETTINGS, {}, {old_hour, ancient}, now, reconcile=False)
    assert work.plan.hours == set()
    assert work.plan.days == {old_hour.date()}
    assert work.plan.months == {ancient.date().replace(day=1)}


def test_tick_state_counts_the_run_and_bumps_the_generation_only_on_change() -> None:
    now = utc(2026, 3, 10, 12)
    stored = {
        state.GENERATION: 4,
        state.TICKS_TOTAL: 10,
        state.TICK_FAILURES_TOTAL: 1,
        state.RECOMPUTE_REQUESTS: [["a", "b"]],
    }
    result = TickResult(started_at=now, reconciled=True, generation=5)
    values = tick_state(stored, {state.WATERMARK: "w"}, result, changed=True, failures=2)
    assert values[state.WATERMARK] == "w"
    assert values[state.RECOMPUTE_REQUESTS] == []
    assert values[state.LAST_RECONCILE] == now.isoformat()
    assert values[state.GENERATION] == 5
    assert values[state.LAST_TICK] == result.as_dict()
    assert (values[state.TICKS_TOTAL], values[state.TICK_FAILURES_TOTAL]) == (11, 3)

    quiet = tick_state({}, {}, TickResult(started_at=now), changed=False, failures=0)
    assert set(quiet) == {state.LAST_TICK, state.TICKS_TOTAL, state.TICK_FAILURES_TOTAL}
    assert (quiet[state.TICKS_TOTAL], quiet[state.TICK_FAILURES_TOTAL]) == (1, 0)


# -- retention ------------------------------------------------------------------------------------


def test_hourly_cleanup_raises_its_floor_and_forgets_deleted_untrusted_days() -> None:
    now = utc(2026, 3, 10, 2, 0)
    cutoff = now - timedelta(days=30)
    untrusted = ["2026-02-01", "2026-02-08", "2026-02-09", "2026-03-01"]
    values = cleanup_state(HOURLY_RETENTION, None, untrusted, cutoff, now)
    assert values == {
        state.HOURLY_DELETED_BEFORE: cutoff.isoformat(),
        "last_cleanup:hourly": now.isoformat(),
        state.HOURLY_UNTRUSTED: ["2026-02-08", "2026-02-09", "2026-03-01"],
    }
    # A floor above the cutoff (a shorter retention ran before) is never lowered.
    higher = (cutoff + timedelta(days=3)).isoformat()
    assert (
        cleanup_state(HOURLY_RETENTION, higher, [], cutoff, now)[state.HOURLY_DELETED_BEFORE]
        == higher
    )


def test_daily_cleanup_keeps_whole_days_and_has_no_untrusted_days() -> None:
    now = utc(2026, 3, 8, 3, 0)
    cutoff = now - timedelta(days=365)
    values = cleanup_state(DAILY_RETENTION, "2024-01-01", None, cutoff, now)
    assert values == {
        state.DAILY_DELETED_BEFORE: "2025-03-08",
        "last_cleanup:daily": now.isoformat(),
    }
    assert DAILY_RETENTION.bound(cutoff) == date(2025, 3, 8)
    assert HOURLY_RETENTION.bound(cutoff) == cutoff
