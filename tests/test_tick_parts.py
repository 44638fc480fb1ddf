"""The pure parts of a tick, of retention and of a backfill month: what to do from what was read.

No database: each part takes the stored state and the rows read, and returns what to write.
Schedules are checked by stepping a fake clock, never by sleeping.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from dashboard_metrics.aggregator.backfill import (
    BackfillOptions,
    changed_rows,
    lifted_floors,
    month_steps,
    outside_days,
    retained_hours,
    trusted_hours,
)
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
from dashboard_metrics.core.coverage import DAILY_RETENTION, HOURLY_RETENTION, RETENTION, Coverage
from dashboard_metrics.core.schema import TIERS
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.values import Agg, RowKey, RowSums
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


# -- a backfill month -----------------------------------------------------------------------------


def _hour_row(hour: datetime, value: float, org: str = "org") -> tuple[Any, ...]:
    return (org, hour, "pages_processed", value, 1, None)


def test_month_steps_split_the_window_by_month() -> None:
    steps = month_steps(date(2026, 2, 27), date(2026, 3, 2))
    assert steps == [
        (date(2026, 2, 1), [date(2026, 2, 27), date(2026, 2, 28)]),
        (date(2026, 3, 1), [date(2026, 3, 1), date(2026, 3, 2)]),
    ]
    assert outside_days(date(2026, 2, 1), [date(2026, 2, 27), date(2026, 2, 28)]) == [
        (date(2026, 2, 1), date(2026, 2, 27))
    ]
    assert outside_days(date(2026, 3, 1), [date(2026, 3, 10)]) == [
        (date(2026, 3, 1), date(2026, 3, 10)),
        (date(2026, 3, 11), date(2026, 4, 1)),
    ]


def test_totals_sum_hours_into_days_and_histogram_buckets_per_bucket() -> None:
    day = date(2026, 3, 10)
    total = RowSums()
    total.add_all(
        [
            ("a", utc(2026, 3, 10, 1), "cost", 1.5, 2, (1, 1)),
            ("a", utc(2026, 3, 10, 5), "cost", 2.0, 1, (0, 1)),
            ("b", utc(2026, 3, 10, 5), "pages", 3.0, 3, None),
        ]
    )
    assert sorted(total.rows(day)) == [
        ("a", day, "cost", 3.5, 3, (1, 2)),
        ("b", day, "pages", 3.0, 3, None),
    ]


def test_retained_hours_follow_the_hourly_retention_edge() -> None:
    coverage = Coverage(hourly_from=utc(2026, 3, 10, 13), daily_from=date(2025, 3, 10))
    hours = [_hour_row(utc(2026, 3, 10, h), h) for h in (3, 12, 13, 20)]
    retained = retained_hours(coverage, date(2026, 3, 10), hours)
    assert retained is not None
    span, rows = retained
    assert span == (utc(2026, 3, 10, 13), utc(2026, 3, 11))
    assert [row[1].hour for row in rows] == [13, 20]
    assert retained_hours(coverage, date(2026, 3, 9), hours) is None
    whole = retained_hours(coverage, date(2026, 3, 11), [])
    assert whole == ((utc(2026, 3, 11), utc(2026, 3, 12)), [])


def test_changed_rows_count_inserts_updates_and_deletes() -> None:
    day = date(2026, 3, 10)
    old = {
        RowKey("a", day, "pages"): Agg(1.0, 1),
        RowKey("b", day, "pages"): Agg(2.0, 2),
        RowKey("c", day, "pages"): Agg(3.0, 3),
    }
    new = [("a", day, "pages", 1.0, 1, None), ("b", day, "pages", 5.0, 2, None)]
    new.append(("d", day, "pages", 1.0, 1, None))
    assert changed_rows(old, new) == 3  # b updated, d inserted, c deleted
    assert changed_rows({}, []) == 0


def test_untrusted_hourly_days_after_a_month() -> None:
    coverage = Coverage(hourly_from=utc(2026, 3, 5), daily_from=date(2025, 3, 10))
    days = [date(2026, 3, d) for d in range(3, 8)]
    skipped = trusted_hours(BackfillOptions(skip_hourly=True), coverage, days, ["2026-01-01"])
    assert skipped == {
        state.HOURLY_UNTRUSTED: ["2026-01-01", "2026-03-05", "2026-03-06", "2026-03-07"]
    }
    rewritten = trusted_hours(BackfillOptions(), coverage, days, ["2026-03-06", "2026-03-20"])
    assert rewritten == {state.HOURLY_UNTRUSTED: ["2026-03-20"]}
    # One organization's rewrite leaves the others' hours as they were.
    assert trusted_hours(BackfillOptions(organization_id="a"), coverage, days, ["2026-03-06"]) == {}
    assert trusted_hours(BackfillOptions(), coverage, days, []) == {}


def test_floors_lift_when_the_month_reaches_them() -> None:
    coverage = Coverage(hourly_from=utc(2026, 2, 10, 12), daily_from=date(2025, 3, 10))
    days = [date(2026, 3, d) for d in range(1, 11)]
    lifted = lifted_floors(
        BackfillOptions(), coverage, days, "2026-03-04T00:00:00+00:00", "2026-03-04"
    )
    assert lifted == {
        state.HOURLY_DELETED_BEFORE: utc(2026, 3, 1).isoformat(),
        state.DAILY_DELETED_BEFORE: "2026-03-01",
    }
    # A floor above the window (a cleanup after it) or none at all stays.
    assert lifted_floors(BackfillOptions(), coverage, days, None, "2026-03-20") == {}
    skipped = BackfillOptions(skip_hourly=True, skip_daily=True)
    assert lifted_floors(skipped, coverage, days, "2026-03-04T00:00:00+00:00", "2026-03-04") == {}
