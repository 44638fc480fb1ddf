"""Shared helpers of the /metrics tests: test data, exposition parsing, oracle comparison."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import CATALOGUE
from dashboard_metrics.core.db import rollup_engine
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.app import create_app
from tests import oracle
from tests.harness import Harness, Org, utc

NS = "unstract"


def populate(
    h: Harness, orgs: list[Org], seed: int = 7, months: tuple[int, ...] = (1, 2, 3)
) -> None:
    """Events of every metric over a few months, with values spread across histogram buckets."""
    rnd = random.Random(seed)
    for org in orgs:
        for month in months:
            for day in (3, 9):
                created = utc(2026, month, day, rnd.randrange(24), 5)
                execution = org.execution(
                    created, kind=rnd.choice(["api", "etl", "task", "manual"])
                )
                done = org.file(execution, created)
                failed = org.file(execution, created, status="ERROR")
                org.pages(done, created, rnd.choice([1, 3, 7, 40, 300, 2000]))
                org.pages(failed, created, rnd.choice([1, 2, 15]))
                for _ in range(rnd.randrange(1, 4)):
                    org.usage(
                        created,
                        reason=rnd.choice(["extraction", "challenge", "summarize"]),
                        cost=rnd.choice([0.00005, 0.0007, 0.02, 0.3, 2.0, 9.0]),
                        tokens=rnd.choice([50, 700, 3000, 50000, 200000]),
                    )


def delete_usage(h: Harness, org: Org, limit: int) -> int:
    """Delete up to ``limit`` of ``org``'s usage rows from the source; returns how many."""
    with h.source.begin() as conn:
        ids = [
            row[0]
            for row in conn.execute(
                st.usage.select()
                .with_only_columns(st.usage.c.id)
                .where(st.usage.c.organization_id == org.pk)
            )
        ][:limit]
        for row_id in ids:
            conn.execute(delete(st.usage).where(st.usage.c.id == row_id))
    return len(ids)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@dataclass
class Expected:
    """What /metrics must show for one (organization, metric)."""

    name: str
    labels: dict[str, str]
    value: float


def expected_samples(
    h: Harness, corrections: dict[tuple[str, str], int] | None = None
) -> list[Expected]:
    """Every usage sample the oracle's all-time totals imply (plus ``corrections`` events that
    the monotonic families keep counting)."""
    totals = oracle.totals(oracle.events(h.source))
    out: list[Expected] = []
    for (org, name), cell in sorted(totals.items()):
        metric = next(m for m in CATALOGUE if m.name == name)
        labels = {"organization": org}
        extra = (corrections or {}).get((org, name), 0)
        family = f"{NS}_{metric.prometheus_name}"
        if not metric.is_histogram:
            out.append(Expected(family, labels, cell.count + extra))
            continue
        running = 0
        bounds = [*metric.buckets, math.inf]
        for bound, count in zip(bounds, cell.buckets, strict=True):
            running += count
            le = "+Inf" if bound == math.inf else repr(float(bound))
            out.append(Expected(f"{family}_bucket", {**labels, "le": le}, running))
        out.append(Expected(f"{family}_count", labels, cell.count + extra))
        out.append(Expected(f"{family}_sum", labels, cell.value))
    return out


def assert_matches_oracle(samples: Samples, h: Harness) -> None:
    expected = expected_samples(h)
    assert expected
    for item in expected:
        got = value(samples, item.name, **item.labels)
        assert got is not None, (item.name, item.labels)
        assert math.isclose(got, item.value, rel_tol=1e-9, abs_tol=1e-9), (item, got)
    for (org, name), _cell in oracle.totals(oracle.events(h.source)).items():
        metric = next(m for m in CATALOGUE if m.name == name)
        base = metric.prometheus_name.removesuffix("_total")
        assert value(samples, f"{NS}_{base}_corrections_total", organization=org) == 0


@asynccontextmanager
async def serving(
    h: Harness, **overrides: Any
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The service over ``h``'s databases with a read-only rollup engine and ``h``'s clock."""
    settings: Settings = h.settings.with_overrides(**overrides) if overrides else h.settings
    reader = rollup_engine(settings, writer=False)
    app = create_app(settings, clock=h.clock, rollup=reader, source=h.source)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        reader.dispose()


async def scrape(client: TestClient[web.Request, web.Application], **headers: str) -> str:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    return await response.text()
