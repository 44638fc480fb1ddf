"""One test per aggregation/backfill bug of Unstract's module (reference section 8).

Each asserts the behaviour Unstract's module gets wrong; the comment says what it would produce.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.schema import HOURLY, MONTHLY
from dashboard_metrics.core.values import RowKey
from tests.harness import Harness, utc


def test_bug1_metric_count_is_the_event_count(h: Harness) -> None:
    org = h.org()
    for minute in (1, 2, 3):  # three calls in one hour, two on the next day
        org.usage(utc(2026, 3, 10, 9, minute), cost=0.01)
    org.usage(utc(2026, 3, 11, 9, 0), cost=0.01)
    org.usage(utc(2026, 3, 11, 10, 0), cost=0.01)
    h.aggregator.tick()
    # Unstract's module stores 1 per hourly and daily row, and "days with data" per month.
    assert h.tier_rows("hourly")[(org.string_id, utc(2026, 3, 10, 9), "llm_calls")][1] == 3
    assert h.tier_rows("daily")[(org.string_id, utc(2026, 3, 11).date(), "llm_calls")][1] == 2
    assert h.tier_rows("monthly")[(org.string_id, utc(2026, 3, 1).date(), "llm_usage")][1] == 5


def test_bug2_files_completing_long_after_creation_are_counted(h: Harness) -> None:
    org = h.org()
    created = h.clock() - timedelta(days=12)
    file_id = org.file(org.execution(created), created, status="EXECUTING")
    h.aggregator.tick()
    with h.source.begin() as conn:  # completes 12 days later: beyond Unstract's 7-day window
        conn.execute(
            update(st.workflow_file_execution)
            .where(st.workflow_file_execution.c.id == file_id)
            .values(status="COMPLETED", modified_at=h.clock.advance(seconds=1))
        )
    h.aggregator.tick(reconcile=False)
    for tier in ("hourly", "daily", "monthly"):
        assert any(k[2] == "documents_processed" for k in h.tier_rows(tier)), tier


def test_bug5_organizations_without_workflow_executions_are_aggregated(h: Harness) -> None:
    prompt_studio_only = h.org()  # activity only in usage and page_usage
    prompt_studio_only.usage(h.clock() - timedelta(hours=2))
    prompt_studio_only.pages("run-without-file", h.clock() - timedelta(hours=2), 4)
    h.aggregator.tick()
    names = {k[2] for k in h.tier_rows("daily") if k[0] == prompt_studio_only.string_id}
    assert {"llm_calls", "pages_processed"} <= names
    h.assert_matches_oracle()


def test_bug6_backfill_never_writes_a_partial_month_over_a_full_one(h: Harness) -> None:
    org = h.org()
    org.usage(utc(2026, 2, 3, 10), cost=1.0)  # early February: outside a 20-day window
    org.usage(utc(2026, 2, 27, 10), cost=2.0)  # late February: inside it
    h.backfill(days=60)
    h.backfill(days=20)  # window starts 2026-02-23
    value, count, _ = h.tier_rows("monthly")[(org.string_id, utc(2026, 2, 1).date(), "llm_usage")]
    assert (value, count) == (3.0, 2)  # Unstract's module writes 2.0 / 1 (the window's part only)
    h.assert_matches_oracle()


def test_bug7_backfill_oldest_day_is_whole(h: Harness) -> None:
    org = h.org()
    h.clock.now = utc(2026, 3, 15, 15, 0)
    org.usage(utc(2026, 3, 12, 1, 30))  # before "now - 3 days" on the oldest day
    org.usage(utc(2026, 3, 12, 23, 30))
    h.backfill(days=3)
    assert h.tier_rows("daily")[(org.string_id, utc(2026, 3, 12).date(), "llm_calls")][1] == 2


def test_bug9_no_rows_for_metrics_without_events(h: Harness) -> None:
    org = h.org()
    org.usage(h.clock() - timedelta(hours=1), reason="extraction")
    h.aggregator.tick()
    names = {k[2] for k in h.tier_rows("hourly")}
    # Unstract's module writes zero rows for challenges and summarization_calls here.
    assert names == {"llm_calls", "llm_usage", "llm_tokens"}
    for tier in ("hourly", "daily", "monthly"):
        assert all(count > 0 for _, count, _ in h.tier_rows(tier).values())


def test_bug11_a_short_or_missing_month_is_repaired(h: Harness) -> None:
    org = h.org()
    for day in (2, 9, 20):
        org.usage(utc(2026, 2, day, 12), cost=1.0)
    h.aggregator.tick()
    key = RowKey(org.string_id, utc(2026, 2, 1).date(), "llm_usage")
    with h.rollup.begin() as conn:  # a month whose stored total is short (lost writes)
        conn.execute(
            update(MONTHLY.table)
            .where(MONTHLY.table.c.metric_name == key.metric_name)
            .values(metric_value=1.0, metric_count=1)
        )
    h.backfill(days=30)  # the window covers only part of February
    h.assert_matches_oracle()
    with h.rollup.begin() as conn:  # and a month with no stored row at all
        conn.execute(delete(MONTHLY.table))
    h.backfill(days=20)
    h.assert_matches_oracle()


def test_bug18_a_failing_tick_writes_nothing(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    org = h.org()
    h.aggregator.tick()
    org.usage(h.clock() - timedelta(hours=1), cost=0.5)

    def explode(*args: object, **kwargs: object) -> int:
        raise RuntimeError("crash between the hourly and the daily write")

    monkeypatch.setattr("dashboard_metrics.aggregator.recompute._rebuild", explode)
    with pytest.raises(RuntimeError):
        h.aggregator.tick()
    with h.rollup.connect() as conn:  # the hourly write was rolled back with the rest
        assert conn.execute(select(HOURLY.table)).first() is None
    monkeypatch.undo()
    h.aggregator.tick()
    h.assert_matches_oracle()


def test_utc_edges_land_in_the_right_buckets(h: Harness) -> None:
    org = h.org()
    h.clock.now = utc(2026, 1, 20)
    edges = [
        utc(2025, 12, 31, 23, 59, 59, 999999),  # last microsecond of a day, month and year
        utc(2026, 1, 1, 0, 0, 0),  # midnight
        utc(2025, 11, 30, 23, 59, 59, 999999),
        utc(2025, 12, 1),
    ]
    for when in edges:
        org.usage(when, cost=0.01)
    h.aggregator.tick()
    h.assert_matches_oracle()
    hourly = {k[1] for k in h.tier_rows("hourly")}
    assert utc(2025, 12, 31, 23) in hourly and utc(2026, 1, 1, 0) in hourly
    months = {k[1] for k in h.tier_rows("monthly")}
    assert months == {utc(2025, 11, 1).date(), utc(2025, 12, 1).date(), utc(2026, 1, 1).date()}
    daily = h.tier_rows("daily")
    assert daily[(org.string_id, utc(2025, 12, 31).date(), "llm_calls")][1] == 1
    assert daily[(org.string_id, utc(2026, 1, 1).date(), "llm_calls")][1] == 1
