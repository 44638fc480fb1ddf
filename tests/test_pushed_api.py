"""Pushed metrics through the JSON API, on both dialects: summary/, series/ and group_by read
their rows after a tick, the live twins read their partials before one; every figure is summed
here from the events the test pushed."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.harness import FakeClock, Harness
from tests.test_api_support import client

pytestmark = pytest.mark.usefixtures("pushed_catalogue")
ORG = "org_pushed"


def url(endpoint: str, **params: str) -> str:
    return f"/api/v1/unstract/{ORG}/metrics/{endpoint}?{urlencode(params)}"


def history(h: Harness, clock: FakeClock) -> None:
    now = clock()
    for n in range(60):
        at = now - timedelta(hours=n * 3, minutes=n)
        workflow = f"wf-{n % 3}" if n % 4 else ""
        labels = {"workflow": workflow} if workflow else {}
        h.push(ORG, f"r{n}", "hitl_reviews", float(n % 5 + 1), at, **labels)
        h.push(ORG, f"s{n}", "hitl_review_seconds", float(n * 37 % 700), at, **labels)
    h.push("org_noise", "r0", "hitl_reviews", 100.0)


def expected(h: Harness, since: Any, key: str = "") -> dict[tuple[str, str], list[float]]:
    """(metric, label value or '') -> [value, count] of the pushed events since ``since``."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for org, metric, at, value, (_model, workflow, _deployment) in h.pushed.values():
        if org == ORG and at >= since:
            cell = sums[(metric, workflow if key else "")]
            cell[0] += value
            cell[1] += 1
    return sums


def check(body: dict[str, Any], want: dict[tuple[str, str], list[float]], key: str = "") -> None:
    got = {
        (entry["metric_name"], (entry.get(key) or "") if key else ""): entry
        for entry in body["summary"]
        if entry["metric_name"].startswith("hitl_")
    }
    assert set(got) == set(want), (sorted(got), sorted(want))
    for cell, (value, count) in want.items():
        assert math.isclose(got[cell]["total_value"], value, rel_tol=1e-9)
        assert got[cell]["total_count"] == count


async def test_summary_and_group_by_match_the_events(h: Harness, clock: FakeClock) -> None:
    history(h, clock)
    h.aggregator.tick()
    start = clock() - timedelta(days=6)
    async with client(h) as c:
        for params, key in (({}, ""), ({"group_by": "workflow"}, "workflow")):
            response = await c.get(url("summary/", start_date=start.isoformat(), **params))
            body = await response.json()
            assert response.status == 200, body
            since = start.replace(minute=0, second=0, microsecond=0)
            check(body, expected(h, since, key), key)


async def test_series_of_a_pushed_histogram(h: Harness, clock: FakeClock) -> None:
    history(h, clock)
    h.aggregator.tick()
    start = clock() - timedelta(days=20)
    async with client(h) as c:
        response = await c.get(
            url("series/", start_date=start.isoformat(), metric_name="hitl_review_seconds")
        )
        body = await response.json()
    assert response.status == 200, body
    (series,) = body["series"]
    assert series["metric_type"] == "histogram"
    total = sum(
        v for o, m, _at, v, _d in h.pushed.values() if o == ORG and m == series["metric_name"]
    )
    assert math.isclose(series["total_value"], total, rel_tol=1e-9)


async def test_live_twins_read_the_partials_before_a_tick(h: Harness, clock: FakeClock) -> None:
    history(h, clock)  # no tick
    async with client(h) as c:
        for params, key in (({}, ""), ({"group_by": "workflow"}, "workflow")):
            response = await c.get(url("live-summary/", **params))
            body = await response.json()
            assert response.status == 200, body
            since = (clock() - timedelta(days=30)).replace(minute=0, second=0, microsecond=0)
            check(body, expected(h, since, key), key)


async def test_a_dimension_the_metric_does_not_carry_is_a_400(h: Harness) -> None:
    async with client(h) as c:
        response = await c.get(url("summary/", metric_name="hitl_reviews", group_by="model"))
        body = await response.json()
    assert response.status == 400, body
    assert "group_by" in str(body)
