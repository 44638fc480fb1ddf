"""Property test of the pushed events: random batches with duplicate ids and retries, ingest
transactions held open across ticks and committed out of order (PostgreSQL), backfills and
time passing, interleaved with ticks. After every tick each tier and breakdown equals the oracle
over the distinct events committed so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as strat
from sqlalchemy.engine import Connection

from dashboard_metrics.core.settings import Settings
from tests.harness import Harness
from tests.oracle import DimEvent
from tests.test_property import fresh_harness

METRICS = ["hitl_reviews", "hitl_completions", "hitl_review_seconds"]
WORKFLOWS = ["", "wf-1", "wf-2"]
MINUTES_20_DAYS = 20 * 24 * 60

event = strat.tuples(
    strat.integers(0, 2),  # organization
    strat.integers(0, 12),  # id: a small range, so ids repeat (retries, duplicates)
    strat.sampled_from(METRICS),
    strat.floats(0, 5000, allow_nan=False),
    strat.integers(0, MINUTES_20_DAYS),  # age
    strat.sampled_from(WORKFLOWS),
)
operation = strat.one_of(
    strat.tuples(strat.just("batch"), strat.lists(event, min_size=1, max_size=8)),
    strat.tuples(strat.just("hold"), strat.lists(event, min_size=1, max_size=4)),
    strat.tuples(strat.just("commit"), strat.integers(0, 3)),
    strat.tuples(strat.just("tick")),
    strat.tuples(strat.just("advance"), strat.integers(1, 6 * 60)),
    strat.tuples(strat.just("backfill"), strat.integers(1, 30)),
)


@dataclass
class Held:
    """An ingest transaction left open: its events count once it commits."""

    conn: Connection
    events: dict[tuple[str, str], DimEvent] = field(default_factory=dict)


@dataclass
class Model:
    h: Harness
    held: list[Held] = field(default_factory=list)
    serial: int = 0

    def push(self, spec: tuple[Any, ...], conn: Connection | None = None) -> None:
        org, number, metric, value, age, workflow = spec
        # Held transactions get ids of their own: two open transactions inserting one id
        # would wait on each other, and this test drives them from one thread.
        self.serial += 1
        event_id = f"held-{self.serial}" if conn is not None else f"e{number}"
        at = self.h.clock() - timedelta(minutes=age)
        labels = {"workflow": workflow} if workflow else {}
        self.h.push(f"org_{org}", event_id, metric, value, at, conn=conn, **labels)

    def apply(self, op: tuple[Any, ...]) -> None:
        h, kind = self.h, op[0]
        if kind == "batch":
            for spec in op[1]:
                self.push(spec)
        elif kind == "hold" and h.dialect == "postgresql" and len(self.held) < 3:
            held = Held(h.rollup.connect())
            held.conn.begin()
            before = dict(h.pushed)
            for spec in op[1]:
                self.push(spec, held.conn)
            held.events = {k: v for k, v in h.pushed.items() if k not in before}
            for key in held.events:  # not counted until it commits
                del h.pushed[key]
            self.held.append(held)
        elif kind == "commit" and self.held:
            self.finish(self.held.pop(op[1] % len(self.held)))
        elif kind == "tick":
            h.aggregator.tick()
            h.assert_matches_oracle()
        elif kind == "advance":
            h.clock.advance(minutes=op[1])
        elif kind == "backfill":
            h.backfill(days=op[1])

    def finish(self, held: Held) -> None:
        held.conn.commit()
        held.conn.close()
        self.h.pushed.update(held.events)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=strat.lists(operation, min_size=1, max_size=25))
@pytest.mark.usefixtures("pushed_catalogue")
def test_random_ingest_histories_match_the_oracle(
    db_settings: Settings, ops: list[tuple[Any, ...]]
) -> None:
    h = fresh_harness(db_settings)
    model = Model(h)
    try:
        org = h.org()
        for op in ops:
            model.apply(op)
            org.usage(h.clock(), cost=0.25, tokens=10)  # source events beside them
        while model.held:
            model.finish(model.held.pop())
        h.aggregator.tick()
        h.assert_matches_oracle()
    finally:
        for held in model.held:
            held.conn.close()
        h.dispose()
