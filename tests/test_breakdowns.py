"""The breakdown tiers (per model, workflow and deployment) follow every change, exactly: each
test moves a dimension without touching the event rows' own hours, ticks without a
reconciliation, and compares every tier and every breakdown tier with the oracle
(``assert_matches_oracle`` also checks that each bucket's breakdown rows add up to its
organization row)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, select, update

from dashboard_metrics.aggregator.testdata import GenerateOptions, generate
from dashboard_metrics.core import migrate
from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import CATALOGUE, DIMENSION_PATHS, Dimension
from dashboard_metrics.core.schema import BREAKDOWN_TIERS
from tests.harness import Harness, Org, utc

# Older than the reconciliation window (7 days): only the change scans can find these hours.
OLD = timedelta(days=12)


@pytest.mark.parametrize("metric", CATALOGUE, ids=lambda m: m.name)
def test_every_dimension_a_metric_carries_resolves_from_its_table(metric: object) -> None:
    for dimension in metric.dimensions:  # type: ignore[attr-defined]
        assert (metric.table, dimension) in DIMENSION_PATHS  # type: ignore[attr-defined]


def test_the_llm_metrics_carry_the_model_and_every_metric_a_workflow_and_deployment() -> None:
    by_model = {m.name for m in CATALOGUE if Dimension.MODEL in m.dimensions}
    assert by_model == {"llm_calls", "challenges", "summarization_calls", "llm_usage", "llm_tokens"}
    assert all({Dimension.WORKFLOW, Dimension.DEPLOYMENT} <= set(m.dimensions) for m in CATALOGUE)


def _run(org: Org, created: datetime, kind: str = "api") -> tuple[str, str, str]:
    """An execution with a completed file, a failed file and pages for both, and an LLM call
    an hour later, all linked to it: (execution, file, usage)."""
    execution = org.execution(created, kind=kind)
    done = org.file(execution, created)
    failed = org.file(execution, created, status="ERROR")
    org.pages(done, created + timedelta(minutes=70), 4)
    org.pages(failed, created, 2)
    usage = org.usage(
        created + timedelta(hours=2),
        model="gpt-4o",
        execution_id=execution,
        workflow_id=org.workflow_id,
    )
    return execution, done, usage


def _update(h: Harness, table: object, row_id: str, **values: object) -> None:
    with h.source.begin() as conn:
        conn.execute(
            update(table)  # type: ignore[arg-type]
            .where(table.c.id == row_id)  # type: ignore[attr-defined]
            .values(**values, modified_at=h.clock.advance(seconds=5))
        )


def _breakdown_rows(h: Harness, tier: str) -> int:
    table = BREAKDOWN_TIERS[tier].table
    with h.rollup.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_events_without_dimension_values_keep_their_place(h: Harness) -> None:
    org = h.org()
    created = h.clock() - timedelta(hours=3)
    org.usage(created, model="")  # no execution, no workflow, no model
    org.pages("not-a-file-id", created, 3)  # pages that match no file
    org.execution(created, kind="manual")  # no pipeline: no deployment
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()
    assert _breakdown_rows(h, "hourly") > 0


def test_a_usage_rows_model_edited_moves_its_events(h: Harness) -> None:
    org = h.org()
    _, _, usage = _run(org, h.clock() - OLD)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()
    _update(h, st.usage, usage, model_name="claude")
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()


def test_an_execution_started_through_another_deployment_moves_its_llm_calls_and_pages(
    h: Harness,
) -> None:
    org = h.org()
    execution, _, _ = _run(org, h.clock() - OLD, kind="api")
    h.aggregator.tick(reconcile=False)
    _update(h, st.workflow_execution, execution, pipeline_id=org.task_id)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()


def test_an_execution_moved_to_another_workflow_moves_its_pages(h: Harness) -> None:
    first, second = h.org(), h.org()
    execution, _, _ = _run(first, h.clock() - OLD, kind="manual")
    h.aggregator.tick(reconcile=False)
    _update(h, st.workflow_execution, execution, workflow_id=second.workflow_id)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()


def test_a_file_moved_to_another_execution_moves_its_pages(h: Harness) -> None:
    org = h.org()
    _, done, _ = _run(org, h.clock() - OLD, kind="api")
    other = org.execution(h.clock() - timedelta(days=20), kind="etl")
    h.aggregator.tick(reconcile=False)
    _update(h, st.workflow_file_execution, done, workflow_execution_id=other)
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle()


def test_backfill_and_retention_keep_the_breakdowns_with_the_organization_rows(
    h: Harness,
) -> None:
    org = h.org()
    for days in (2, 20, 45):
        _run(org, h.clock() - timedelta(days=days), kind="etl")
    report = h.backfill(days=60)
    assert report.tiers["event_metrics_breakdown_monthly"].rows > 0
    h.assert_matches_oracle()
    before = _breakdown_rows(h, "hourly")
    assert h.aggregator.cleanup("hourly", 10) > 0
    assert 0 < _breakdown_rows(h, "hourly") < before
    h.assert_matches_oracle(since={"hourly": h.clock() - timedelta(days=10)})
    # A backfill of one organization rewrites only its rows, breakdowns included.
    other = h.org()
    _run(other, h.clock() - timedelta(days=3))
    h.backfill(days=5, organization_id=other.string_id)
    h.assert_matches_oracle(since={"hourly": h.clock() - timedelta(days=10)})


def test_a_dry_run_counts_breakdown_rows_and_writes_none(h: Harness) -> None:
    org = h.org()
    _run(org, utc(2026, 3, 10, 9))
    report = h.backfill(days=10, dry_run=True)
    assert report.tiers["event_metrics_breakdown_hourly"].written > 0
    assert _breakdown_rows(h, "hourly") == 0


def test_an_upgrade_over_existing_rollups_fills_the_breakdowns_at_the_next_tick(
    h: Harness,
) -> None:
    """Rollups written before migration 0004 have no breakdown rows: the migration asks the
    next tick for the whole history, so no breakdown day or month is a sum of a few new hours."""
    generate(
        h.source,
        h.settings.effective_source_schema,
        GenerateOptions(orgs=2, days=40, records_per_day=3, seed=11),
        h.clock(),
    )
    h.backfill(days=45)
    h.aggregator.tick(reconcile=False)  # the first tick reads everything: take it before
    config = migrate._config()
    with h.rollup.begin() as conn:  # as before 0004: organization tiers only
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    migrate.upgrade(h.rollup)
    with h.source.connect() as conn:  # one changed hour in an old day
        recent = conn.execute(
            select(st.usage.c.id).where(st.usage.c.created_at < h.clock() - timedelta(days=2))
        ).first()
    assert recent is not None
    _update(h, st.usage, recent.id, model_name="edited")
    h.aggregator.tick(reconcile=False)
    h.assert_matches_oracle(since={"hourly": h.clock() - timedelta(days=30)})
