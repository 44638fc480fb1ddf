"""Every tier equals the oracle: after ticks, late changes, deletes, retention and backfill."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, update

from dashboard_metrics.aggregator.testdata import GenerateOptions, generate
from dashboard_metrics.core import source_tables as st
from tests.harness import Harness, utc


def _activity(h: Harness) -> None:
    a, b = h.org(), h.org()
    for org in (a, b):
        for hour in range(5):
            created = utc(2026, 3, 14, hour, 15)
            execution = org.execution(created, kind="api" if hour % 2 else "etl")
            done = org.file(execution, created)
            failed = org.file(execution, created, status="ERROR")
            org.pages(done, created, 7)
            org.pages(failed, created, 3)
            org.usage(created, reason="challenge", cost=0.02, tokens=900)
            org.usage(created, reason="summarize", cost=0.5, tokens=40000)
            org.usage(created, usage_type="embedding", reason="")


def test_tick_matches_oracle_on_a_small_history(h: Harness) -> None:
    _activity(h)
    result = h.aggregator.tick()
    assert result.rows_written > 0
    h.assert_matches_oracle()


def test_generated_history_backfill_and_tick_agree_with_oracle(h: Harness) -> None:
    generate(
        h.source,
        h.settings.effective_source_schema,
        GenerateOptions(orgs=3, days=40, records_per_day=4, seed=7),
        h.clock(),
    )
    h.backfill(days=45)
    h.assert_matches_oracle(since={"hourly": h.clock() - timedelta(days=30)})
    # A tick over the same data finds nothing to change.
    assert h.aggregator.tick().rows_written == 0
    h.assert_matches_oracle(since={"hourly": h.clock() - timedelta(days=30)})


def test_first_tick_without_backfill_builds_every_tier(h: Harness) -> None:
    generate(
        h.source,
        h.settings.effective_source_schema,
        GenerateOptions(orgs=2, days=50, records_per_day=3, seed=3),
        h.clock(),
    )
    h.aggregator.tick()
    h.assert_matches_oracle(since={"hourly": h.clock() - timedelta(days=30)})


def test_new_rows_after_a_tick_are_picked_up(h: Harness) -> None:
    _activity(h)
    h.aggregator.tick()
    org = h.org()
    h.clock.advance(minutes=1)
    created = h.clock() - timedelta(minutes=5)
    org.usage(created, reason="lookup", cost=0.3)
    execution = org.execution(created, kind="task")
    org.file(execution, created)
    h.aggregator.tick()
    h.assert_matches_oracle()


def test_late_status_change_lands_in_the_creation_hour(h: Harness) -> None:
    org = h.org()
    created = h.clock() - timedelta(days=10, hours=3)
    execution = org.execution(created)
    file_id = org.file(execution, created, status="EXECUTING")
    h.aggregator.tick()
    h.clock.advance(days=9)  # Unstract's 7-day reconcile window is long gone
    with h.source.begin() as conn:
        conn.execute(
            update(st.workflow_file_execution)
            .where(st.workflow_file_execution.c.id == file_id)
            .values(status="COMPLETED", modified_at=h.clock.advance(seconds=1))
        )
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()
    assert (org.string_id, created.date(), "documents_processed") in h.tier_rows("daily")


def test_change_beyond_hourly_retention_fixes_day_and_month(h: Harness) -> None:
    org = h.org()
    old = h.clock() - timedelta(days=45)
    h.aggregator.tick()
    org.usage(old, reason="challenge", cost=0.25)
    org.usage(h.clock() - timedelta(hours=1))
    h.aggregator.tick()
    h.assert_matches_oracle(since={"hourly": h.clock() - timedelta(days=30)})
    assert not [k for k in h.tier_rows("hourly") if k[1] < h.clock() - timedelta(days=30)]


def test_change_beyond_daily_retention_fixes_the_month(h: Harness) -> None:
    org = h.org()
    h.aggregator.tick()
    org.usage(h.clock() - timedelta(days=400), cost=0.5)
    org.usage(h.clock() - timedelta(days=200), cost=0.5)
    h.aggregator.tick()
    daily_from = (h.clock() - timedelta(days=365)).date()
    h.assert_matches_oracle(since={"hourly": h.clock() - timedelta(days=30), "daily": daily_from})
    assert not [k for k in h.tier_rows("daily") if k[1] < daily_from]


def test_pages_recorded_later_for_a_failed_file(h: Harness) -> None:
    org = h.org()
    created = h.clock() - timedelta(days=2)
    failed = org.file(org.execution(created), created, status="ERROR")
    h.aggregator.tick()
    h.clock.advance(hours=1)
    org.pages(failed, h.clock(), 12)  # page_usage written now, for a file failed 2 days ago
    h.aggregator.tick()
    h.assert_matches_oracle()
    value, count, _ = h.tier_rows("hourly")[
        (org.string_id, created.replace(minute=0, second=0, microsecond=0), "failed_pages")
    ]
    assert (value, count) == (12.0, 1)


def test_deletes_are_caught_by_reconciliation_and_backfill(h: Harness) -> None:
    _activity(h)
    org = h.org()
    recent = org.usage(h.clock() - timedelta(days=2), cost=0.75)
    old = org.usage(h.clock() - timedelta(days=20), cost=0.5)
    h.aggregator.tick()
    with h.source.begin() as conn:
        conn.execute(delete(st.usage).where(st.usage.c.id.in_([recent, old])))
    h.aggregator.tick(reconcile=True)  # reconciles the last 7 days
    events_recent = h.tier_rows("daily")
    assert (org.string_id, (h.clock() - timedelta(days=2)).date(), "llm_calls") not in events_recent
    h.backfill(days=30)
    h.assert_matches_oracle()


def test_cleanup_with_a_shorter_retention_keeps_later_ticks_exact(h: Harness) -> None:
    org = h.org()
    created = h.clock() - timedelta(days=10)
    execution = org.execution(created)
    file_id = org.file(execution, created, status="EXECUTING")
    org.usage(created)
    h.aggregator.tick()
    assert h.aggregator.cleanup("hourly", retention_days=7) > 0
    with h.source.begin() as conn:
        conn.execute(
            update(st.workflow_file_execution)
            .where(st.workflow_file_execution.c.id == file_id)
            .values(status="COMPLETED", modified_at=h.clock.advance(seconds=1))
        )
    org.usage(created)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle(since={"hourly": h.clock() - timedelta(days=7)})


def test_daily_cleanup_then_late_change_keeps_the_month_exact(h: Harness) -> None:
    org = h.org()
    created = h.clock() - timedelta(days=40)
    org.usage(created, cost=0.1)
    h.aggregator.tick()
    assert h.aggregator.cleanup("daily", retention_days=20) > 0
    org.usage(created, cost=0.2)
    h.aggregator.tick()
    h.assert_matches_oracle(
        since={
            "hourly": h.clock() - timedelta(days=20),
            "daily": (h.clock() - timedelta(days=20)).date(),
        }
    )


def test_scheduled_cleanup_runs_when_due(h: Harness) -> None:
    org = h.org()
    org.usage(h.clock() - timedelta(days=29, hours=23))
    h.aggregator.tick()
    assert h.tier_rows("hourly")
    h.clock.advance(days=1)  # past 02:00: the hourly cleanup is due, the row is 30+ days old
    result = h.aggregator.tick()
    assert result.cleaned.get("hourly", 0) >= 1
    assert not h.tier_rows("hourly")
    assert h.tier_rows("daily") and h.tier_rows("monthly")
