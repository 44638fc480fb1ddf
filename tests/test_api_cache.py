"""The cache: hits and misses, Redis killed and restarted mid-test, and freshness after ticks,
on a private redis-server and on the in-process cache."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from dashboard_metrics.exporter.api.context import API
from dashboard_metrics.exporter.cache import RESPONSE_CACHE, MemoryBackend
from dashboard_metrics.exporter.stats import STATS
from tests.harness import Harness, utc
from tests.test_api_support import client, seed

ENDPOINTS = [
    "summary/?start_date=2026-03-12T03:00:00Z",
    "series/?start_date=2026-03-12T03:00:00Z&granularity=hour",
    "summary/",
    "overview/",
    "live-summary/",
    "live-series/",
    "recent-activity/",
    "workflow-token-usage/?deployment_type=api",
]


class RedisServer:
    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(200):  # waiting for a process to listen, not for time to pass
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


async def bodies(c: Any, org: str) -> dict[str, Any]:
    out = {}
    for path in ENDPOINTS:
        response = await c.get(f"/api/v1/unstract/{org}/metrics/{path}")
        assert response.status == 200, (path, await response.text())
        out[path] = await response.json()
    return out


async def test_redis_killed_and_restarted(h: Harness, redis_server: RedisServer) -> None:
    org = seed(h, events=20)[0].string_id
    async with client(h, redis_url=redis_server.url) as c:
        app = c.server.app
        app[RESPONSE_CACHE].retry_seconds = 0.0  # no backoff wait: the test never sleeps
        stats = app[STATS]
        first = await bodies(c, org)
        assert stats.cache["miss"] > 0
        hits, misses = stats.cache["hit"], stats.cache["miss"]
        assert await bodies(c, org) == first
        assert stats.cache["miss"] == misses  # everything came from Redis
        hits = stats.cache["hit"]

        redis_server.stop()
        assert await bodies(c, org) == first  # served from the database, same numbers
        assert stats.cache["error"] > 0
        ready = await (await c.get("/readyz")).json()
        assert ready["status"] == "degraded" and ready["checks"]["cache"]["status"] == "degraded"
        health = await c.get(f"/api/v1/unstract/{org}/metrics/health/")
        assert health.status == 200
        assert (await health.json())["checks"]["cache"]["status"] == "degraded"

        redis_server.start()  # same port, empty: filled again, then hit
        assert await bodies(c, org) == first
        assert await bodies(c, org) == first
        assert stats.cache["hit"] > hits
        assert (await (await c.get("/readyz")).json())["status"] == "ready"


async def test_backoff_skips_redis_until_the_retry_time(h: Harness) -> None:
    async with client(h, redis_url="redis://127.0.0.1:1/0") as c:
        cache = c.server.app[RESPONSE_CACHE]
        cache.retry_seconds = 3600.0
        assert await cache.mget(["a", "b"]) == [None, None]
        assert not cache.available
        stats = c.server.app[STATS]
        before = stats.cache["error"]
        assert await cache.mget(["a"]) == [None]  # skipped, still counted
        assert stats.cache["error"] == before + 1


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_no_endpoint_serves_a_value_a_tick_replaced(
    h: Harness, backend: str, request: pytest.FixtureRequest
) -> None:
    orgs = seed(h, events=15)
    org = orgs[0]
    url = request.getfixturevalue("redis_server").url if backend == "redis" else ""
    async with client(h, redis_url=url) as c:
        before = await bodies(c, org.string_id)
        await bodies(c, org.string_id)  # now cached
        for when in (utc(2026, 3, 13, 4, 10), utc(2026, 3, 15, 12, 5)):  # history, current hour
            execution = org.execution(when, kind="api")
            run = org.file(execution, when)
            org.pages(run, when, 5)
            org.usage(when, cost=0.5, tokens=100)
        h.clock.advance(seconds=1)
        h.aggregator.tick()
        after = await bodies(c, org.string_id)
        for path in ENDPOINTS:
            assert after[path] != before[path], path
        refreshed = await bodies(c, org.string_id)
        assert refreshed == after


async def test_memory_backend_expires_entries_and_is_bounded_in_bytes() -> None:
    from dashboard_metrics.exporter.cache import ENTRY_OVERHEAD

    now = [0.0]
    entry = 1 + 1 + ENTRY_OVERHEAD  # a one-character key and a one-byte value
    backend = MemoryBackend(max_bytes=2 * entry, monotonic=lambda: now[0])
    await backend.setex_many([("a", 10, b"1"), ("b", 60, b"2")])
    assert await backend.mget(["a", "b", "c"]) == [b"1", b"2", None]
    now[0] = 30.0
    assert await backend.mget(["a", "b"]) == [None, b"2"]
    await backend.setex_many([("c", 5, b"3"), ("d", 5, b"4")])
    assert await backend.mget(["b", "c", "d"]) == [None, b"3", b"4"]  # bounded: oldest went
    assert backend.size == 2 * entry
    await backend.setex_many([("big", 5, b"x" * 3 * entry)])  # larger than the whole bound
    assert await backend.mget(["big", "c", "d"]) == [None, b"3", b"4"]
    # A large value pushes out as many entries as its bytes need, not one.
    await backend.setex_many([("e", 5, b"y" * (entry + 1))])
    assert await backend.mget(["c", "d", "e"]) == [None, None, b"y" * (entry + 1)]
    assert backend.size <= 2 * entry


async def test_a_new_generation_empties_the_in_process_layers(h: Harness) -> None:
    """Entries of past aggregator generations are evicted, not left to age out."""
    org = seed(h, orgs=1, events=10)[0]
    async with client(h) as c:
        cache = c.app[RESPONSE_CACHE]
        backend = cache.backend
        assert isinstance(backend, MemoryBackend)
        for path in ("overview/", "summary/", "recent-activity/"):
            assert (await c.get(f"/api/v1/unstract/{org.string_id}/metrics/{path}")).status == 200
        assert len(backend) > 0 and len(cache.bodies) > 0
        before = await c.app[API].generation()
        org.usage(h.clock(), reason="challenge", cost=0.1, tokens=10)
        h.clock.advance(seconds=1)
        h.aggregator.tick()
        after = await c.app[API].generation()  # what every request reads first
        assert after > before
        assert len(backend) == 0
        assert cache.body(after, "any key") is None and len(cache.bodies) == 0
