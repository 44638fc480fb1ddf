"""JSON API benchmarks (not part of the test run).

warm: throughput of summary/ and series/ with a warm cache, against a bare aiohttp handler that
      returns JSON of the same size, same load generator (an aiohttp client), 50 connections.
cold: p95 latency of series/ over a 90-day daily range with the cache off, on a small and a
      large source history (rollups make it independent of the source size).

  uv run python benchmarks/bench_api.py warm --url postgresql+psycopg://.../bench_api_small
  uv run python benchmarks/bench_api.py cold --small-url ... --large-url ...
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from typing import Any

from aiohttp import ClientSession, TCPConnector, web
from sqlalchemy import select

from aggregator.db import rollup_engine, source_engine
from aggregator.rollup_tables import HOURLY
from aggregator.settings import Settings
from exporter.app import create_app

CONNECTIONS = 50


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def load(url: str, requests: int) -> tuple[float, int, list[float]]:
    """(requests per second, errors, latencies) for ``requests`` GETs over 50 connections."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)
    async with ClientSession(connector=TCPConnector(limit=CONNECTIONS)) as session:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                queue.get_nowait()
                began = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - began
    return requests / elapsed, errors, latencies


def first_org(settings: Settings) -> str:
    engine = rollup_engine(settings, writer=False)
    with engine.connect() as conn:
        org = conn.execute(select(HOURLY.table.c.organization_id).limit(1)).scalar_one()
    engine.dispose()
    return str(org)


def app_for(settings: Settings) -> web.Application:
    return create_app(
        settings,
        rollup=rollup_engine(settings, writer=False),
        source=source_engine(settings),
    )


async def warm(args: argparse.Namespace) -> None:
    settings = Settings(database_url=args.url, redis_url=args.redis_url)
    org = first_org(settings)
    runner, base = await start(app_for(settings))
    paths = {
        "summary": f"/api/v1/unstract/{org}/metrics/summary/?source=hourly&start_date=-",
        "series": f"/api/v1/unstract/{org}/metrics/series/?source=hourly&granularity=hour",
    }
    try:
        async with ClientSession() as session:
            for name, path in paths.items():
                path = path.replace("&start_date=-", "")
                days = args.days
                url = f"{base}{path}&start_date={_ago(days)}"
                async with session.get(url) as response:  # warms the cache
                    body = await response.read()
                    assert response.status == 200, body[:300]
                bare_runner, bare = await start(_bare(body))
                try:
                    await load(url, 200)
                    await load(bare + "/", 200)
                    rps, errors, _ = await load(url, args.requests)
                    bare_rps, bare_errors, _ = await load(bare + "/", args.requests)
                finally:
                    await bare_runner.cleanup()
                print(
                    f"warm {name:8s} {days}d hourly, {len(body)} bytes: {rps:8.0f} req/s "
                    f"(errors {errors}); bare handler {bare_rps:8.0f} req/s (errors "
                    f"{bare_errors}); ratio {rps / bare_rps:.2f}"
                )
    finally:
        await runner.cleanup()


def _ago(days: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:00:00Z")


def _bare(body: bytes) -> web.Application:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/", handler)
    return app


async def cold_p95(url: str, requests: int) -> tuple[float, int]:
    settings = Settings(database_url=url, cache_enabled=False)
    org = first_org(settings)
    runner, base = await start(app_for(settings))
    from datetime import UTC, datetime, timedelta

    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start_date = (end - timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = (
        f"?source=daily&granularity=day&start_date={start_date}&end_date={end:%Y-%m-%dT%H:%M:%SZ}"
    )
    target = f"{base}/api/v1/unstract/{org}/metrics/series/{query}"
    try:
        await load(target, 50)
        _, errors, latencies = await load(target, requests)
    finally:
        await runner.cleanup()
    return statistics.quantiles(latencies, n=20)[18], errors


async def cold(args: argparse.Namespace) -> None:
    small, small_errors = await cold_p95(args.small_url, args.requests)
    large, large_errors = await cold_p95(args.large_url, args.requests)
    print(
        f"cold series 90d daily p95: small {small * 1000:.1f} ms (errors {small_errors}), "
        f"large {large * 1000:.1f} ms (errors {large_errors}); ratio {large / small:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("warm")
    w.add_argument("--url", required=True)
    w.add_argument("--redis-url", default="")
    w.add_argument("--days", type=int, default=1)
    w.add_argument("--requests", type=int, default=5000)
    c = sub.add_parser("cold")
    c.add_argument("--small-url", required=True)
    c.add_argument("--large-url", required=True)
    c.add_argument("--requests", type=int, default=500)
    args: Any = parser.parse_args()
    asyncio.run(warm(args) if args.mode == "warm" else cold(args))


if __name__ == "__main__":
    main()
