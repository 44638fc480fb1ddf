"""Property test: random histories of inserts, late status changes, deletes, re-attributions
(pipelines switching type, workflows changing organization), dimension changes (a usage row's
model edited, an execution moved to another workflow or deployment), rows stamped in the future,
generated data, backfills, short cleanups, ticks and reconciliations. After each tick every tier
equals the oracle, within the README's guarantees: deletes show after a reconciliation within its
window, and always after a backfill."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as strat
from sqlalchemy import delete, select, update

from dashboard_metrics.aggregator.testdata import GenerateOptions, generate
from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.state import request_recompute
from tests.conftest import reset_pg
from tests.harness import FakeClock, Harness, Org, utc

MINUTES_40_DAYS = 40 * 24 * 60
MODELS = ["gpt-4o", "claude", ""]

operation = strat.one_of(
    strat.tuples(
        strat.just("usage"),
        strat.integers(0, 2),
        strat.integers(0, MINUTES_40_DAYS),
        strat.sampled_from(["extraction", "challenge", "summarize", "lookup"]),
        strat.floats(0, 2, allow_nan=False),
        strat.integers(0, 200_000),
        strat.sampled_from(MODELS),
        strat.integers(-1, 50),  # the execution it belongs to (-1: none)
    ),
    strat.tuples(strat.just("edit_model"), strat.integers(0, 50), strat.sampled_from(MODELS)),
    strat.tuples(strat.just("move_execution"), strat.integers(0, 50), strat.integers(0, 2)),
    strat.tuples(
        strat.just("redeploy_execution"),
        strat.integers(0, 50),
        strat.sampled_from(["manual", "etl", "task", "api"]),
    ),
    strat.tuples(
        strat.just("file"),
        strat.integers(0, 2),
        strat.integers(0, MINUTES_40_DAYS),
        strat.sampled_from(["COMPLETED", "ERROR", "EXECUTING"]),
        strat.sampled_from(["manual", "etl", "task", "api"]),
        strat.integers(0, 60),
    ),
    strat.tuples(strat.just("complete"), strat.integers(0, 50)),
    strat.tuples(strat.just("delete"), strat.integers(0, 50)),
    strat.tuples(strat.just("flip_pipeline"), strat.integers(0, 2)),
    strat.tuples(strat.just("move_workflow"), strat.integers(0, 2), strat.integers(0, 2)),
    strat.tuples(
        strat.just("future_usage"),
        strat.integers(0, 2),
        strat.integers(0, 3000),
        strat.integers(1, 30),
    ),
    strat.tuples(strat.just("generate"), strat.integers(1, 40)),
    strat.tuples(
        strat.just("backfill"),
        strat.integers(1, 45),
        strat.sampled_from(["", "skip_hourly", "skip_daily", "skip_monthly"]),
    ),
    strat.tuples(
        strat.just("cleanup_then_backfill"),
        strat.sampled_from(["hourly", "daily"]),
        strat.integers(1, 10),
    ),
    strat.tuples(strat.just("tick")),
    strat.tuples(strat.just("reconcile")),
    strat.tuples(strat.just("advance"), strat.integers(1, 12 * 60)),
)


@dataclass
class Model:
    h: Harness
    orgs: list[Org]
    files: list[str] = field(default_factory=list)
    executions: list[tuple[Org, str]] = field(default_factory=list)
    usages: list[str] = field(default_factory=list)
    deletable: list[tuple[Any, str, datetime]] = field(default_factory=list)
    unreconciled: list[datetime] = field(default_factory=list)
    generated: int = 0

    def apply(self, op: tuple[Any, ...]) -> None:
        h, kind = self.h, op[0]
        if kind == "usage":
            _, org, age, reason, cost, tokens, model, execution = op
            created = h.clock() - timedelta(minutes=age)
            linked = execution >= 0 and self.executions
            run = self.executions[execution % len(self.executions)] if linked else None
            row = self.orgs[org].usage(
                created,
                reason=reason,
                cost=cost,
                tokens=tokens,
                model=model,
                execution_id=None if run is None else run[1],
                workflow_id=None if run is None else run[0].workflow_id,
            )
            self.deletable.append((st.usage, row, created))
            self.usages.append(row)
        elif kind in ("edit_model", "move_execution", "redeploy_execution"):
            self.change_dimension(op)
        elif kind == "file":
            _, org, age, status, how, pages = op
            created = h.clock() - timedelta(minutes=age)
            execution_id = self.orgs[org].execution(created, kind=how)
            self.executions.append((self.orgs[org], execution_id))
            file_id = self.orgs[org].file(execution_id, created, status=status)
            self.files.append(file_id)
            if pages:
                self.orgs[org].pages(file_id, created, pages)
        elif kind == "complete" and self.files:
            file_id = self.files[op[1] % len(self.files)]
            with h.source.begin() as conn:
                conn.execute(
                    update(st.workflow_file_execution)
                    .where(st.workflow_file_execution.c.id == file_id)
                    .values(status="COMPLETED", modified_at=h.clock.advance(seconds=1))
                )
        elif kind == "delete" and self.deletable:
            table, row, created = self.deletable.pop(op[1] % len(self.deletable))
            with h.source.begin() as conn:
                conn.execute(delete(table).where(table.c.id == row))
            self.unreconciled.append(created)
        elif kind == "flip_pipeline":
            org = self.orgs[op[1]]
            with h.source.begin() as conn:
                kind_now = conn.execute(
                    select(st.pipeline.c.pipeline_type).where(st.pipeline.c.id == org.task_id)
                ).scalar_one()
                conn.execute(
                    update(st.pipeline)
                    .where(st.pipeline.c.id == org.task_id)
                    .values(
                        pipeline_type="ETL" if kind_now == "TASK" else "TASK",
                        modified_at=h.clock.advance(seconds=1),
                    )
                )
        elif kind == "move_workflow":
            moved, target = self.orgs[op[1]], self.orgs[op[2]]
            with h.source.begin() as conn:
                conn.execute(
                    update(st.workflow)
                    .where(st.workflow.c.id == moved.workflow_id)
                    .values(organization_id=target.pk, modified_at=h.clock.advance(seconds=1))
                )
        elif kind == "future_usage":  # a writer whose clock runs ahead
            _, org, age, ahead = op
            created = h.clock() - timedelta(minutes=age)
            stamp = h.clock() + timedelta(minutes=ahead)
            row = self.orgs[org].usage(created, modified=stamp)
            self.deletable.append((st.usage, row, created))
        elif kind == "generate":  # past modified_at values, announced to the next tick
            self.generated += 1
            options = GenerateOptions(
                orgs=1, days=op[1], records_per_day=1, seed=1000 + self.generated, until=h.clock()
            )
            report = generate(h.source, h.settings.effective_source_schema, options, h.clock())
            request_recompute(h.rollup, report.start, report.end, h.clock())
        elif kind == "backfill":
            h.backfill(days=op[1], **({op[2]: True} if op[2] else {}))
            window = (h.clock() - timedelta(days=op[1])).date()
            self.unreconciled = [c for c in self.unreconciled if c.date() < window]
        elif kind == "cleanup_then_backfill":
            h.aggregator.cleanup(op[1], op[2])
            h.backfill(days=45)  # back to every tier's full retention (events are <= 40 days)
            self.unreconciled = []
        elif kind == "tick":
            h.aggregator.tick(reconcile=False, housekeeping=False)
            if not self.unreconciled:
                h.assert_matches_oracle()
        elif kind == "reconcile":
            h.aggregator.tick(reconcile=True)
            window = h.clock() - timedelta(days=h.settings.reconcile_days)
            self.unreconciled = [c for c in self.unreconciled if c < window]
            if not self.unreconciled:
                h.assert_matches_oracle()
        elif kind == "advance":
            h.clock.advance(minutes=op[1])

    def change_dimension(self, op: tuple[Any, ...]) -> None:
        """A usage row's model edited; an execution moved to another workflow (another
        organization's) or started through another deployment."""
        h, kind = self.h, op[0]
        table: Any = st.workflow_execution
        if kind == "edit_model":
            if not self.usages:
                return
            table, row = st.usage, self.usages[op[1] % len(self.usages)]
            values: dict[str, Any] = {"model_name": op[2]}
        else:
            if not self.executions:
                return
            owner, row = self.executions[op[1] % len(self.executions)]
            if kind == "move_execution":
                values = {"workflow_id": self.orgs[op[2]].workflow_id}
            else:
                deployments = {"manual": None, "etl": owner.etl_id, "task": owner.task_id}
                values = {"pipeline_id": deployments.get(op[2], owner.api_id)}
        with h.source.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.id == row)
                .values(**values, modified_at=h.clock.advance(seconds=1))
            )


def fresh_harness(template: Settings) -> Harness:
    if template.rollup_url.startswith("sqlite"):
        directory = Path(tempfile.mkdtemp(prefix="dm-prop-"))
        db = Settings(data_dir=directory, database_url=f"sqlite:///{directory / 'dm.db'}")
    else:
        reset_pg(template.rollup_url)
        db = template
    return Harness(db, FakeClock(utc(2026, 6, 30, 22, 10)))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=strat.lists(operation, min_size=1, max_size=30))
def test_random_histories_match_the_oracle(
    db_settings: Settings, ops: list[tuple[Any, ...]]
) -> None:
    h = fresh_harness(db_settings)
    try:
        model = Model(h, [h.org() for _ in range(3)])
        for op in ops:
            model.apply(op)
        h.aggregator.tick(reconcile=True)
        if model.unreconciled:
            h.backfill(days=45)
        h.assert_matches_oracle()
    finally:
        h.dispose()
