"""Shared helpers of the API tests (no tests here): a seeded history, the app, the oracle's
expected answers for any range, filter, tier and time zone."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from dashboard_metrics.core.catalogue import METRICS
from dashboard_metrics.exporter.api.context import API
from dashboard_metrics.exporter.app import create_app
from tests import oracle
from tests.harness import Harness, Org, utc

HISTORY_START = utc(2026, 1, 20)


def seed(h: Harness, orgs: int = 2, events: int = 60, seed_value: int = 7) -> list[Org]:
    """A random history from 2026-01-20 up to the current hour (the clock is 2026-03-15 12:30),
    dense around the last days so hour, day and month edges all hold events."""
    rng = random.Random(seed_value)
    now = h.clock()
    made = [h.org() for _ in range(orgs)]
    span = (now - HISTORY_START).total_seconds()
    for org in made:
        for index in range(events):
            if index % 3 == 0:
                when = now - timedelta(seconds=rng.uniform(0, 9 * 86400))
            else:
                when = HISTORY_START + timedelta(seconds=rng.uniform(0, span))
            kind = rng.choice(["manual", "etl", "task", "api"])
            execution = org.execution(when, kind=kind, status=rng.choice(["COMPLETED", "ERROR"]))
            status = rng.choice(["COMPLETED", "ERROR", "EXECUTING"])
            file_id = org.file(execution, when, status=status)
            if rng.random() < 0.7:
                org.pages(file_id, when, rng.randint(1, 30))
            reason = rng.choice(["extraction", "challenge", "summarize"])
            usage_id = org.usage(
                when, reason=reason, cost=rng.uniform(0, 0.2), tokens=rng.randint(10, 9000)
            )
            link_usage(h, usage_id, execution, file_id)
    h.aggregator.tick()
    return made


def link_usage(h: Harness, usage_id: str, execution_id: str, run_id: str) -> None:
    from sqlalchemy import update

    from dashboard_metrics.core import source_tables as st

    with h.source.begin() as conn:
        conn.execute(
            update(st.usage)
            .where(st.usage.c.id == usage_id)
            .values(execution_id=execution_id, run_id=run_id)
        )


@asynccontextmanager
async def client(h: Harness, **settings: Any) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(
        replace(h.settings, **settings), clock=h.clock, rollup=h.rollup, source=h.source
    )
    app[API].state_ttl = 0.0  # tests tick and then ask at once
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _local_bucket(when: datetime, granularity: str, tz: tzinfo) -> datetime:
    """The start, as a time in ``tz``, of the hour/day/week (from Monday)/month holding
    ``when``'s UTC hour; written apart from the service's own bucketing on purpose."""
    hour = when.astimezone(UTC).replace(minute=0, second=0, microsecond=0).astimezone(tz)
    if granularity == "hour":
        return hour
    # Wall-clock arithmetic on aware datetimes keeps the zone: midnight of that local day.
    midnight = hour.replace(hour=0, minute=0, fold=0)
    if granularity == "day":
        return midnight
    if granularity == "week":
        return (midnight - timedelta(days=midnight.isoweekday() - 1)).replace(fold=0)
    assert granularity == "month", granularity
    return midnight.replace(day=1)


def expected(
    h: Harness,
    org: str,
    lo: datetime,
    hi: datetime,
    granularity: str,
    tz: tzinfo = UTC,
    metric: str | None = None,
) -> dict[str, dict[datetime, tuple[float, int]]]:
    """metric -> bucket start (in tz) -> (value, events), from raw source rows."""
    out: dict[str, dict[datetime, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for event_org, name, when, value in oracle.events(h.source):
        if event_org != org or not lo <= when < hi or (metric and name != metric):
            continue
        cell = out[name][_local_bucket(when, granularity, tz)]
        cell[0] += value
        cell[1] += 1
    return {
        name: {k: (v[0], int(v[1])) for k, v in buckets.items()} for name, buckets in out.items()
    }


def metric_type(name: str) -> str:
    return METRICS[name].type.value
