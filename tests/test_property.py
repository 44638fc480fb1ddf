"""Property test: random histories of inserts, late status changes, deletes, ticks and
reconciliations. After each tick every tier equals the oracle, within DESIGN's guarantees:
deletes show after a reconciliation within its window, and always after a backfill."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as strat
from sqlalchemy import delete, update

from aggregator import source_tables as st
from aggregator.settings import Settings
from tests.conftest import reset_pg
from tests.harness import FakeClock, Harness, Org, utc

MINUTES_40_DAYS = 40 * 24 * 60

operation = strat.one_of(
    strat.tuples(
        strat.just("usage"),
        strat.integers(0, 2),
        strat.integers(0, MINUTES_40_DAYS),
        strat.sampled_from(["extraction", "challenge", "summarize", "lookup"]),
        strat.floats(0, 2, allow_nan=False),
        strat.integers(0, 200_000),
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
    strat.tuples(strat.just("tick")),
    strat.tuples(strat.just("reconcile")),
    strat.tuples(strat.just("advance"), strat.integers(1, 12 * 60)),
)


@dataclass
class Model:
    h: Harness
    orgs: list[Org]
    files: list[str] = field(default_factory=list)
    deletable: list[tuple[Any, str, datetime]] = field(default_factory=list)
    unreconciled: list[datetime] = field(default_factory=list)

    def apply(self, op: tuple[Any, ...]) -> None:
        h, kind = self.h, op[0]
        if kind == "usage":
            _, org, age, reason, cost, tokens = op
            created = h.clock() - timedelta(minutes=age)
            row = self.orgs[org].usage(created, reason=reason, cost=cost, tokens=tokens)
            self.deletable.append((st.usage, row, created))
        elif kind == "file":
            _, org, age, status, how, pages = op
            created = h.clock() - timedelta(minutes=age)
            file_id = self.orgs[org].file(
                self.orgs[org].execution(created, kind=how), created, status=status
            )
            self.files.append(file_id)
            if pages:
                self.orgs[org].pages(file_id, created, pages)
        elif kind == "complete" and self.files:
            file_id = self.files[op[1] % len(self.files)]
            with h.source.begin() as conn:
                conn.execute(
                    update(st.workflow_file_execution)
                    .where(st.workflow_file_execution.c.id == file_id)
                    .values(status="COMPLETED", modified_at=h.clock())
                )
        elif kind == "delete" and self.deletable:
            table, row, created = self.deletable.pop(op[1] % len(self.deletable))
            with h.source.begin() as conn:
                conn.execute(delete(table).where(table.c.id == row))
            self.unreconciled.append(created)
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


def fresh_harness(template: Settings) -> Harness:
    if template.rollup_url.startswith("sqlite"):
        directory = Path(tempfile.mkdtemp(prefix="dm-prop-"))
        db = Settings(data_dir=directory, database_url=f"sqlite:///{directory / 'dm.db'}")
    else:
        reset_pg(template.database_url)
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
