"""Pushed events folded into every tier by the tick: each accepted event counted once, in
every tier and breakdown, whatever the order ingest transactions commit in, across retention
and backfills. The oracle sums the distinct accepted events in Python (tests/oracle.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from dashboard_metrics.core import eventsql, state
from dashboard_metrics.core.schema import Granularity, pushed_events
from dashboard_metrics.core.timeutil import HOUR
from tests.harness import FakeClock, Harness, utc

pytestmark = pytest.mark.usefixtures("pushed_catalogue")


def test_events_fold_into_every_tier_and_breakdown(h: Harness, clock: FakeClock) -> None:
    org = h.org()
    org.usage(clock(), cost=0.5, tokens=100)  # built-in metrics beside the pushed ones
    now = clock()
    h.push(org.string_id, "a", "hitl_reviews", workflow="wf-1")
    h.push(org.string_id, "b", "hitl_reviews", 3, now - timedelta(hours=2), workflow="wf-2")
    h.push(org.string_id, "c", "hitl_completions", at=now - timedelta(days=3))
    for i, seconds in enumerate((5, 10, 11, 45, 4000)):
        h.push("org_other", f"r{i}", "hitl_review_seconds", seconds, now - timedelta(days=20))
    h.aggregator.tick()
    h.assert_matches_oracle()
    cell = h.tier_rows("hourly")[(org.string_id, now.replace(minute=0), "hitl_reviews")]
    assert cell[:2] == (1.0, 1)  # the value default 1, counted once


def test_duplicate_ids_count_once(h: Harness) -> None:
    org = h.org()
    assert h.push(org.string_id, "same", "hitl_reviews", 2)
    assert not h.push(org.string_id, "same", "hitl_reviews", 5)
    assert h.push("org_b", "same", "hitl_reviews", 7)  # ids are per organization
    h.aggregator.tick()
    h.aggregator.tick()  # a second tick finds nothing new and changes nothing
    h.assert_matches_oracle()
    rows = h.tier_rows("monthly")
    assert {k[0]: v[0] for k, v in rows.items() if k[2] == "hitl_reviews"} == {
        org.string_id: 2.0,
        "org_b": 7.0,
    }


def test_only_new_hours_are_recomputed(h: Harness, clock: FakeClock) -> None:
    h.aggregator.tick()
    clock.advance(minutes=1)
    h.push("org_a", "old", "hitl_reviews", at=clock() - timedelta(days=5, hours=3))
    result = h.aggregator.tick(reconcile=False)
    assert result.dirty_hours == 1
    assert h.aggregator.tick(reconcile=False).dirty_hours == 0
    h.assert_matches_oracle()


def test_a_transaction_that_commits_late_is_still_folded(pg_h: Harness, clock: FakeClock) -> None:
    """PostgreSQL: an ingest transaction that began before a tick and committed after it has
    the older transaction id; the next tick still finds its events."""
    h = pg_h
    with h.rollup.connect() as early:
        transaction = early.begin()
        h.push("org_a", "early", "hitl_reviews", 4, conn=early)  # takes its xid now
        h.push("org_a", "later", "hitl_reviews", 1)  # a newer xid, committed first
        h.aggregator.tick()
        clock.advance(minutes=1)
        transaction.commit()
    h.aggregator.tick()
    h.assert_matches_oracle()
    assert h.tier_rows("hourly")[("org_a", clock().replace(minute=0), "hitl_reviews")][:2] == (
        5.0,
        2,
    )


def test_a_tick_waiting_on_an_open_ingest_sees_it_later(pg_h: Harness, clock: FakeClock) -> None:
    """A transaction open across several ticks, committing an event for an old hour."""
    h = pg_h
    h.push("org_a", "first", "hitl_reviews")
    with h.rollup.connect() as slow:
        transaction = slow.begin()
        h.push("org_a", "slow", "hitl_completions", at=clock() - timedelta(days=2), conn=slow)
        for _ in range(3):
            h.aggregator.tick()
            clock.advance(minutes=1)
        transaction.commit()
    h.aggregator.tick()
    h.assert_matches_oracle()


def test_backfill_keeps_the_pushed_rows(h: Harness, clock: FakeClock) -> None:
    org = h.org()
    org.usage(clock(), cost=1.0, tokens=10)
    h.push(org.string_id, "a", "hitl_reviews", 2, clock() - timedelta(days=1), workflow="wf")
    h.push(org.string_id, "b", "hitl_review_seconds", 30)
    h.aggregator.tick()
    h.backfill(days=45)
    h.assert_matches_oracle()
    h.backfill(days=45, dry_run=True)
    h.aggregator.tick()
    h.assert_matches_oracle()


def test_rows_outlive_their_events(h: Harness, clock: FakeClock) -> None:
    """Retention deletes events older than events_retention_days; the rows they made stay, and
    a later recompute of their buckets (the reconciliation) leaves them as they are."""
    h.aggregator.settings = h.settings.with_overrides(events_retention_days=2)
    h.push("org_a", "a", "hitl_reviews", 3, clock() - timedelta(days=1, hours=12))
    h.push("org_a", "b", "hitl_reviews", 1, clock() - timedelta(hours=1))
    h.aggregator.tick(reconcile=False)
    clock.advance(days=1)
    h.aggregator.tick(reconcile=True)  # the cleanup is due: the older event goes
    with h.rollup.connect() as conn:
        assert conn.execute(select(func.count()).select_from(pushed_events)).scalar() == 1
        assert state.get(conn, state.EVENTS_DELETED_BEFORE) is not None
    h.assert_matches_oracle()
    clock.advance(days=1)
    h.aggregator.tick(reconcile=True)
    h.assert_matches_oracle()


def test_rows_of_a_metric_taken_out_of_the_file_stay(h: Harness, clock: FakeClock) -> None:
    from dashboard_metrics.core import catalogue

    h.push("org_a", "a", "hitl_reviews", 3)
    h.aggregator.tick()
    before = h.tier_rows("monthly")
    installed = catalogue.pushed_metrics()
    catalogue.install_pushed([m for m in installed if m.name != "hitl_reviews"])
    try:
        clock.advance(minutes=1)
        h.aggregator.tick(reconcile=True)
        assert h.tier_rows("monthly") == before
    finally:
        catalogue.install_pushed(installed)


def test_doctor_counts_the_events_and_warns_of_undeclared_ones(h: Harness) -> None:
    from dashboard_metrics.aggregator.doctor import check_pushed
    from dashboard_metrics.core import catalogue

    h.push("org_a", "a", "hitl_reviews")
    h.push("org_a", "b", "hitl_completions")
    (found,) = check_pushed(h.rollup, h.settings)
    assert found.level == "ok" and "3 declared" in found.detail and "2 events kept" in found.detail
    installed = catalogue.pushed_metrics()
    catalogue.install_pushed([m for m in installed if m.name != "hitl_completions"])
    try:
        warning = check_pushed(h.rollup, h.settings)[1]
    finally:
        catalogue.install_pushed(installed)
    assert warning.level == "warn" and "hitl_completions" in warning.detail


@pytest.mark.parametrize(
    ("events_from", "granularity", "first"),
    [
        (utc(2026, 3, 10, 5, 0), Granularity.HOUR, utc(2026, 3, 10, 5, 0)),
        (utc(2026, 3, 10, 5, 1), Granularity.HOUR, utc(2026, 3, 10, 6, 0)),
        (utc(2026, 3, 10, 0, 0), Granularity.DAY, utc(2026, 3, 10)),
        (utc(2026, 3, 10, 5, 1), Granularity.DAY, utc(2026, 3, 11)),
        (utc(2026, 3, 1), Granularity.MONTH, utc(2026, 3, 1)),
        (utc(2026, 12, 10), Granularity.MONTH, utc(2027, 1, 1)),
    ],
)
def test_the_first_bucket_the_events_hold_whole(
    events_from: datetime, granularity: Granularity, first: datetime
) -> None:
    assert eventsql.first_whole_bucket(events_from, granularity) == first
    assert eventsql.clip([(first - HOUR, first + HOUR)], first) == [(first, first + HOUR)]
