"""The in-process layer of final summary/ and series/ bodies: bytes identical to a freshly
computed answer, per-request bounds, refresh, generation changes, bounds and expiry; and the
shared read of the aggregator state."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from dashboard_metrics.exporter.api import context, shape
from dashboard_metrics.exporter.api.context import API
from dashboard_metrics.exporter.api.rollups import Cell
from dashboard_metrics.exporter.cache import ENTRY_OVERHEAD, RESPONSE_CACHE, BodyCache
from dashboard_metrics.exporter.stats import STATS
from tests.harness import Harness, utc
from tests.test_api_support import client, seed

PATHS = [
    "summary/?start_date=2026-03-12T03:00:00Z",
    "series/?start_date=2026-03-12T03:00:00Z&granularity=hour",
    "series/?start_date=2026-02-01&end_date=2026-03-01&granularity=day",  # daily tier
    "summary/?start_date=2026-03-10&tz=Europe/Berlin&project=default",
]


async def get(c: Any, org: str, path: str) -> tuple[bytes, dict[str, Any]]:
    response = await c.get(f"/api/v1/unstract/{org}/metrics/{path}")
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    body = await response.read()
    return body, json.loads(body)


async def test_hits_are_the_bytes_orjson_gives_and_echo_each_requests_bounds(
    h: Harness,
) -> None:
    org = seed(h, events=15)[0].string_id
    async with client(h) as c:
        cache = c.server.app[RESPONSE_CACHE]
        for path in PATHS:
            first, data = await get(c, org, path)
            assert first == orjson.dumps(data)  # one encoding, head and cached tail alike
            hits = c.server.app[STATS].cache["hit"]
            h.clock.advance(minutes=5)  # the same hours: a hit, but end_date is now's
            second, again = await get(c, org, path)
            assert c.server.app[STATS].cache["hit"] == hits + 1
            assert second == orjson.dumps(again)
            if "end_date" not in path:
                assert again["end_date"] != data["end_date"]
            assert {k: v for k, v in again.items() if k != "end_date"} == {
                k: v for k, v in data.items() if k != "end_date"
            }
        assert len(cache.bodies) == len(PATHS)


async def test_refresh_and_a_new_generation_bypass_the_layer(h: Harness) -> None:
    org = seed(h, events=15)[0]
    path = PATHS[0]
    async with client(h) as c:
        stats = c.server.app[STATS]
        before, _ = await get(c, org.string_id, path)
        hits = stats.cache["hit"]
        await get(c, org.string_id, path + "&refresh=true")
        assert stats.cache["hit"] == hits  # neither layer was read

        when = utc(2026, 3, 13, 4, 10)
        execution = org.execution(when, kind="api")
        org.pages(org.file(execution, when), when, 5)
        org.usage(when, cost=0.5, tokens=100)
        h.clock.advance(seconds=1)
        h.aggregator.tick()
        after, _ = await get(c, org.string_id, path)
        assert after != before


async def test_cache_disabled_keeps_no_bodies(h: Harness) -> None:
    org = seed(h, events=10)[0].string_id
    async with client(h, cache_enabled=False) as c:
        await get(c, org, PATHS[0])
        await get(c, org, PATHS[0])
        assert len(c.server.app[RESPONSE_CACHE].bodies) == 0
        assert c.server.app[STATS].cache["hit"] == 0


async def test_concurrent_requests_share_one_state_read(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    real = context._read_state

    def counting(engine: Any) -> dict[str, Any]:
        reads.append(1)
        return real(engine)

    monkeypatch.setattr(context, "_read_state", counting)
    async with client(h) as c:
        api = c.server.app[API]
        api.state_ttl = 60.0
        generations = await asyncio.gather(*(api.generation() for _ in range(20)))
        assert len(set(generations)) == 1
        assert len(reads) == 1


@pytest.mark.parametrize("granularity", ["hour", "day", "week", "month"])
@pytest.mark.parametrize("tz", [UTC, ZoneInfo("Europe/Berlin")])
def test_series_json_is_series_with_every_number_exact(granularity: str, tz: Any) -> None:
    rng = random.Random(granularity)
    start = utc(2026, 2, 20)
    cells = [
        Cell(
            start + timedelta(hours=rng.randrange(0, 24 * 40)),
            "hourly",
            rng.choice(["cost", "tokens", "pages"]),
            "counter",
            rng.choice(["default", "p\u00e9", 'q"x']),
            rng.choice(["", "t1"]),
            rng.choice([rng.uniform(0, 1e6), 0.1, 3.0, 1e-7, 1e22, 2.0**60, 12345678901234567.0]),
            rng.randrange(0, 50),
        )
        for _ in range(400)
    ]
    for subset in (cells, cells[:1], []):
        body = shape.series_json(subset, granularity, tz)
        expected = shape.series(subset, granularity, tz)
        assert json.loads(body) == expected  # every float parses back to the same double
        assert body == orjson.dumps(expected)


def test_series_json_writes_a_non_finite_value_as_null() -> None:
    """Standard JSON has no Infinity/NaN (json.dumps wrote them; orjson writes null)."""
    cell = Cell(utc(2026, 2, 20), "hourly", "cost", "counter", "default", "", float("inf"), 1)
    [entry] = json.loads(shape.series_json([cell], "hour", UTC))
    assert entry["data"][0]["value"] is None and entry["total_value"] is None


async def test_a_remembered_plan_ends_where_retention_reaches_it(h: Harness) -> None:
    """Clock 2026-03-15 12:30, hourly retention 30 days: the hour 2026-02-13 13:00 leaves the
    hourly tier just after 2026-03-15 13:00; a range starting there then fails at once, though
    the aggregator state (and so the remembered plan's snapshot) was not re-read."""
    org = seed(h, events=10)[0].string_id
    async with client(h) as c:
        c.server.app[API].state_ttl = 3600.0
        hourly = "summary/?source=hourly&start_date=2026-02-13T13:00:00Z&end_date=2026-02-14"
        auto = "series/?start_date=2026-02-13T13:00:00Z&end_date=2026-02-14&granularity=hour"
        assert (await get(c, org, hourly))[1]["source"] == "hourly"
        assert (await get(c, org, auto))[1]["source"] == "hourly"
        h.clock.advance(minutes=30)  # the hour starts exactly at the retention limit: kept
        assert (await get(c, org, hourly))[1]["source"] == "hourly"
        h.clock.advance(microseconds=1)
        response = await c.get(f"/api/v1/unstract/{org}/metrics/{hourly}")
        assert response.status == 400, await response.text()
        auto_response = await c.get(f"/api/v1/unstract/{org}/metrics/{auto}")
        assert auto_response.status == 400  # granularity=hour: no coarser tier may answer


def test_body_cache_generations_expiry_and_bounds() -> None:
    now = [0.0]
    # Each entry also counts a fixed overhead: room for 10 bytes of bodies in two entries.
    cache = BodyCache(
        max_bytes=10 + 2 * ENTRY_OVERHEAD, max_entry_bytes=6, monotonic=lambda: now[0]
    )
    cache.put(1, "a", 60, b"aaaa")
    assert cache.get(1, "a") == b"aaaa"
    assert cache.get(0, "a") is None  # a lagging generation never hits...
    cache.put(0, "b", 60, b"bb")
    assert cache.get(1, "b") is None  # ...nor stores
    cache.put(1, "big", 60, b"1234567")  # larger than one entry may be
    assert cache.get(1, "big") is None
    cache.put(1, "c", 60, b"cccc")
    cache.get(1, "a")  # "a" is now the most recently used
    cache.put(1, "d", 60, b"dddd")  # over 10 bytes: the least recently used ("c") goes
    assert (cache.get(1, "a"), cache.get(1, "c"), cache.get(1, "d")) == (b"aaaa", None, b"dddd")
    now[0] = 61.0
    assert cache.get(1, "a") is None  # expired
    cache.put(1, "e", 60, b"e")
    assert cache.get(2, "e") is None and len(cache) == 0  # a newer generation empties it
