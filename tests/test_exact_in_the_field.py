"""The invariant beside what operators do in the field: backfills with pending changes, skewed
clocks, re-attributed events, idle ticks, generated data, short cleanups and float cancellation.
Every test compares every tier with the oracle, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Table, update

from dashboard_metrics.aggregator.testdata import GenerateOptions, generate
from dashboard_metrics.core import migrate, state
from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.db import rollup_engine
from dashboard_metrics.core.settings import Settings
from tests import processes
from tests.harness import Harness, Org


def _update(h: Harness, table: Table, row_id: str, **values: object) -> None:
    """An update as an application makes it: ``modified_at`` moves to the (advanced) clock."""
    with h.source.begin() as conn:
        conn.execute(
            update(table)
            .where(table.c.id == row_id)
            .values(**values, modified_at=h.clock.advance(seconds=1))
        )


def _stored(h: Harness, key: str) -> object:
    with h.rollup.connect() as conn:
        return state.get(conn, key)


def test_backfill_beside_a_pending_change_counts_it_once(h: Harness) -> None:
    org = h.org()
    h.aggregator.tick()
    now = h.clock()
    yesterday = now.replace(hour=10, minute=15) - timedelta(days=1)
    earlier_this_month = now.replace(day=3, hour=8)
    assert yesterday.month == earlier_this_month.month == now.month
    org.usage(yesterday, reason="challenge")  # inside the backfill's window
    org.usage(earlier_this_month, reason="challenge")  # outside it, in the month it rebuilds
    h.backfill(days=1)
    h.aggregator.tick()
    h.assert_matches_oracle()
    h.clock.advance(minutes=2)
    h.aggregator.tick(reconcile=True)
    h.assert_matches_oracle()


@pytest.mark.parametrize("skip", ["skip_hourly", "skip_daily", "skip_monthly"])
def test_a_backfill_skipping_a_tier_loses_no_pending_change(h: Harness, skip: str) -> None:
    org = h.org()
    h.aggregator.tick()
    yesterday = h.clock() - timedelta(days=1, hours=2)
    org.usage(yesterday, cost=0.75)  # pending: no tick has seen it
    org.usage(h.clock() - timedelta(days=40), cost=0.5)  # pending, another month
    h.backfill(days=2, **{skip: True})
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()
    h.clock.advance(seconds=30)
    assert h.aggregator.tick(reconcile=False).dirty_hours == 0


def test_backfills_and_ticks_interleaved_never_double_count(h: Harness) -> None:
    org = h.org()
    for step in range(6):
        org.usage(h.clock() - timedelta(days=step * 3, hours=step), cost=0.1 * (step + 1))
        if step % 2:
            h.backfill(days=step * 2 + 1)
        h.aggregator.tick()
        h.assert_matches_oracle()
        h.clock.advance(minutes=1)


def test_a_future_modified_at_does_not_hide_later_rows(h: Harness) -> None:
    org = h.org()
    h.aggregator.tick()
    skewed = h.clock() + timedelta(minutes=10)
    org.usage(h.clock() - timedelta(hours=1), modified=skewed)
    h.aggregator.tick()
    watermark = datetime.fromisoformat(str(_stored(h, state.WATERMARK)))
    assert watermark <= h.clock()
    h.clock.advance(minutes=1)
    org.usage(h.clock() - timedelta(hours=3))  # an ordinary row, stamped before the skewed one
    h.aggregator.tick()
    h.assert_matches_oracle()


def _executions(org: Org, h: Harness, kind: str) -> list[str]:
    """Executions with files from today back past both retentions."""
    ids = []
    for age in (timedelta(hours=2), timedelta(days=5), timedelta(days=40), timedelta(days=400)):
        created = h.clock() - age
        execution = org.execution(created, kind=kind)
        org.file(execution, created, status="COMPLETED")
        ids.append(execution)
    return ids


def test_a_pipeline_switching_type_moves_its_executions(h: Harness) -> None:
    org = h.org()
    _executions(org, h, "task")
    h.aggregator.tick()
    _update(h, st.pipeline, org.task_id, pipeline_type="ETL")
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()


def test_a_workflow_changing_organization_moves_executions_and_files(h: Harness) -> None:
    first, second = h.org(), h.org()
    _executions(first, h, "manual")
    h.aggregator.tick()
    _update(h, st.workflow, first.workflow_id, organization_id=second.pk)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()


def test_pipeline_and_deployment_changing_organization(h: Harness) -> None:
    first, second = h.org(), h.org()
    _executions(first, h, "etl")
    _executions(first, h, "api")
    h.aggregator.tick()
    _update(h, st.pipeline, first.etl_id, organization_id=second.pk)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()
    _update(h, st.api_deployment, first.api_id, organization_id=second.pk)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()


def test_an_execution_changing_workflow_or_pipeline_moves_its_files(h: Harness) -> None:
    first, second = h.org(), h.org()
    executions = _executions(first, h, "task")
    h.aggregator.tick()
    for execution in executions:
        _update(h, st.workflow_execution, execution, workflow_id=second.workflow_id)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()
    for execution in executions:
        _update(h, st.workflow_execution, execution, pipeline_id=second.etl_id)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()


def test_an_idle_tick_recomputes_nothing_but_late_commits_are_seen(h: Harness) -> None:
    org = h.org()
    for minutes in range(0, 600, 7):
        org.usage(h.clock() - timedelta(minutes=minutes))
    h.aggregator.tick()
    for _ in range(3):
        h.clock.advance(seconds=30)
        idle = h.aggregator.tick(reconcile=False)
        assert idle.dirty_hours == 0 and idle.rows_written == 0, idle.as_dict()
    # A transaction that began two minutes ago commits now: inside the overlap, behind the
    # watermark. Its hour (and only its hour) is recomputed.
    org.usage(h.clock() - timedelta(hours=30), modified=h.clock() - timedelta(minutes=2))
    late = h.aggregator.tick(reconcile=False)
    assert late.dirty_hours == 1, late.as_dict()
    h.assert_matches_oracle()
    h.clock.advance(seconds=30)
    assert h.aggregator.tick(reconcile=False).dirty_hours == 0


def test_generated_data_beside_a_running_aggregator(h: Harness) -> None:
    schema = h.settings.effective_source_schema
    options = GenerateOptions(orgs=2, days=40, records_per_day=2, seed=3, until=h.clock())
    generate(h.source, schema, options, h.clock())
    h.aggregator.tick()
    h.assert_matches_oracle()
    h.clock.advance(minutes=1)
    # A second run with past modified_at values, written after the tick: announced, it is
    # recomputed by the next tick without a backfill; --clean deletes and rewrites one org.
    again = GenerateOptions(orgs=1, days=45, records_per_day=3, seed=4, until=h.clock())
    report = generate(h.source, schema, again, h.clock())
    assert state.request_recompute(h.rollup, report.start, report.end, h.clock())
    h.aggregator.tick()
    h.assert_matches_oracle()
    cleaned = GenerateOptions(
        organization_id=report.organizations[0], days=3, clean=True, seed=5, until=h.clock()
    )
    report = generate(h.source, schema, cleaned, h.clock())
    assert report.start < h.clock() - timedelta(days=40)  # the deleted rows' range is included
    state.request_recompute(h.rollup, report.start, report.end, h.clock())
    result = h.aggregator.tick()
    h.assert_matches_oracle()
    assert _stored(h, state.RECOMPUTE_REQUESTS) == []
    h.clock.advance(seconds=30)
    assert h.aggregator.tick(reconcile=False).dirty_hours == 0, result.as_dict()


def test_a_backfill_restores_what_a_short_cleanup_deleted(h: Harness) -> None:
    org = h.org()
    for days in range(0, 40, 2):
        org.usage(h.clock() - timedelta(days=days, hours=3))
    h.aggregator.tick()
    assert h.aggregator.cleanup("daily", 20) > 0
    assert h.aggregator.cleanup("hourly", 5) > 0
    assert _stored(h, state.DAILY_DELETED_BEFORE) is not None
    h.backfill(days=31)
    window_start = (h.clock() - timedelta(days=31)).date()
    daily_floor = _stored(h, state.DAILY_DELETED_BEFORE)
    hourly_floor = _stored(h, state.HOURLY_DELETED_BEFORE)
    assert str(daily_floor) <= window_start.isoformat()
    assert datetime.fromisoformat(str(hourly_floor)) <= h.clock() - timedelta(days=30)
    # Hourly within its 30 days and daily over the window are back; older days stay deleted.
    h.assert_matches_oracle(since={"daily": window_start})
    with h.rollup.connect() as conn:
        coverage = h.aggregator.coverage(conn, h.clock())
    assert coverage.daily_from <= window_start


def test_a_backfill_for_one_organization_does_not_lift_the_floor(h: Harness) -> None:
    first, second = h.org(), h.org()
    for org in (first, second):
        org.usage(h.clock() - timedelta(days=25))
    h.aggregator.tick()
    h.aggregator.cleanup("daily", 20)
    floor = _stored(h, state.DAILY_DELETED_BEFORE)
    h.backfill(days=31, organization_id=first.string_id)
    assert _stored(h, state.DAILY_DELETED_BEFORE) == floor


def test_days_and_months_do_not_drift_after_a_huge_correction(h: Harness) -> None:
    org = h.org()
    row = org.usage(h.clock() - timedelta(hours=2), cost=1e12)
    org.usage(h.clock() - timedelta(hours=5), cost=0.25)
    h.aggregator.tick()
    _update(h, st.usage, row, cost_in_dollars=0.001)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()
    daily = h.tier_rows("daily")[(org.string_id, h.clock().date(), "llm_usage")]
    assert daily[0] == 0.001 + 0.25


def test_concurrent_migrations_all_succeed(db_settings: Settings) -> None:
    runs = [processes.start(db_settings, "migrate") for _ in range(4)]
    outcomes = [(run.wait(timeout=120), run.communicate()) for run in runs]
    assert [code for code, _ in outcomes] == [0] * 4, outcomes
    engine = rollup_engine(db_settings)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_an_unrelated_update_of_a_pipeline_dirties_nothing(h: Harness) -> None:
    org = h.org()
    _executions(org, h, "etl")
    h.aggregator.tick()
    h.clock.advance(minutes=1)
    _update(h, st.pipeline, org.etl_id, run_count=7)  # every run bumps it; nothing moves
    assert h.aggregator.tick(reconcile=False).dirty_hours == 0
    _update(h, st.pipeline, org.etl_id, pipeline_type="TASK")
    moved = h.aggregator.tick(reconcile=False)
    assert moved.dirty_hours == 4, moved.as_dict()  # the hours of its four executions
    h.assert_matches_oracle()
