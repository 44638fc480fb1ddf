"""JSON API benchmarks (not part of the test run).

warm: throughput of summary/, series/ and summary/?group_by=model (a breakdown) with a warm
      cache, against a bare aiohttp handler that returns JSON of the same size, same load
      generator (an aiohttp client), 50 connections; rounds alternate between the two, the
      figure is the median per-round ratio. --endpoints picks some of them.
cold: p95 latency of series/ over a 90-day daily range with the cache off, on a small and a
      large source history served at once, rounds alternating between them (rollups make it
      independent of the source size).
Servers run in their own processes unless --in-process; the API runs behind the same runner and
protocol handler as `serve` (exporter/server.py), the bare handler behind aiohttp's own.
Figures: benchmarks/README.md ("API").

  uv run python benchmarks/bench_api.py warm --url postgresql+psycopg://.../bench_api_small
  uv run python benchmarks/bench_api.py cold --small-url ... --large-url ...
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.process
import socket
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import ClientSession, TCPConnector, web
from sqlalchemy import select

from dashboard_metrics.core.db import rollup_engine, source_engine
from dashboard_metrics.core.schema import HOURLY
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.app import create_app
from dashboard_metrics.exporter.keys import SETTINGS
from dashboard_metrics.exporter.server import run_app
from dashboard_metrics.exporter.server import runner as served_by

CONNECTIONS = 50


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    # The API behind the runner `serve` uses (its protocol handler included); the bare
    # handler behind aiohttp's own.
    runner = served_by(app) if SETTINGS in app else web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def load(
    url: str, requests: int, connections: int = CONNECTIONS
) -> tuple[float, int, list[float]]:
    """(requests per second, errors, latencies) for ``requests`` GETs over ``connections``."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)
    async with ClientSession(connector=TCPConnector(limit=connections)) as session:

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
        await asyncio.gather(*(worker() for _ in range(connections)))
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


def _ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:00:00Z")


def _bare(body: bytes) -> web.Application:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/", handler)
    return app


def _serve(kind: str, payload: Any, port: int) -> None:
    """A server process: the API (payload: Settings) or the bare handler (payload: body)."""
    if kind == "api":
        run_app(app_for(payload), host="127.0.0.1", port=port)  # as `serve` runs it
    else:
        web.run_app(_bare(payload), host="127.0.0.1", port=port, access_log=None, print=None)


class Server:
    """One server, in its own process (default) or on the load generator's event loop."""

    def __init__(self, kind: str, payload: Any, separate: bool) -> None:
        self.kind, self.payload, self.separate = kind, payload, separate
        self.proc: multiprocessing.process.BaseProcess | None = None
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def __aenter__(self) -> Server:
        if not self.separate:
            app = app_for(self.payload) if self.kind == "api" else _bare(self.payload)
            self.runner, self.base = await start(app)
            return self
        port = free_port()
        self.proc = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(self.kind, self.payload, port), daemon=True
        )
        self.proc.start()
        self.base = f"http://127.0.0.1:{port}"
        for _ in range(600):  # waiting for the process to listen
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    return self
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.kind} server did not start")

    async def __aexit__(self, *_exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.join()


async def warm(args: argparse.Namespace) -> None:
    settings = Settings(database_url=args.url, redis_url=args.redis_url)
    org = first_org(settings)
    start_date = _ago(args.days)
    every = {
        "summary": f"/api/v1/unstract/{org}/metrics/summary/?source=hourly",
        "series": f"/api/v1/unstract/{org}/metrics/series/?source=hourly&granularity=hour",
        "summary_model": f"/api/v1/unstract/{org}/metrics/summary/?source=hourly&group_by=model",
    }
    paths = {name: every[name] for name in args.endpoints.split(",")}
    cache = "redis" if args.redis_url else "in-process"
    where = "in the load generator's process" if args.in_process else "each in its own process"
    print(f"warm, {cache} cache, servers {where}, {args.rounds} interleaved rounds")
    async with Server("api", settings, not args.in_process) as api:
        for name, path in paths.items():
            url = f"{api.base}{path}&start_date={start_date}"
            async with ClientSession() as session, session.get(url) as response:  # warms
                body = await response.read()
                assert response.status == 200, body[:300]
            async with Server("bare", body, not args.in_process) as bare:
                await load(url, 500)
                await load(bare.base + "/", 500)
                ratios, api_rps, bare_rps, errors = [], [], [], 0
                for _ in range(args.rounds):  # interleaved: the machine's noise hits both
                    rps, api_errors, _ = await load(url, args.requests)
                    base_rps, bare_errors, _ = await load(bare.base + "/", args.requests)
                    errors += api_errors + bare_errors
                    api_rps.append(rps)
                    bare_rps.append(base_rps)
                    ratios.append(rps / base_rps)
            print(
                f"warm {name:13s} {args.days}d hourly, {len(body)} bytes: median "
                f"{statistics.median(api_rps):6.0f} req/s; bare handler "
                f"{statistics.median(bare_rps):6.0f} req/s; ratio median "
                f"{statistics.median(ratios):.2f} (rounds: "
                f"{' '.join(f'{r:.2f}' for r in ratios)}); errors {errors}"
            )


def p95(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=20)[18]


async def cold(args: argparse.Namespace) -> None:
    """Both servers up at once (each in its own process unless --in-process); rounds alternate
    between them so the machine's noise hits both histories alike."""
    small = Settings(database_url=args.small_url, cache_enabled=False)
    large = Settings(database_url=args.large_url, cache_enabled=False)
    org = first_org(small)  # the same organization on both histories
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start_date = (end - timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = (
        f"?source=daily&granularity=day&start_date={start_date}&end_date={end:%Y-%m-%dT%H:%M:%SZ}"
    )
    path = f"/api/v1/unstract/{org}/metrics/series/{query}"
    separate = not args.in_process
    where = "in the load generator's process" if args.in_process else "each in its own process"
    print(
        f"cold series/ 90d daily, cache off, {org}, servers {where}, {args.rounds} rounds of "
        f"{args.requests} requests per history, {args.connections} connections"
    )
    async with Server("api", small, separate) as s_api, Server("api", large, separate) as l_api:
        sizes = []
        for server in (s_api, l_api):
            async with ClientSession() as session, session.get(server.base + path) as response:
                body = await response.read()
                assert response.status == 200, body[:300]
                sizes.append(len(body))
            await load(server.base + path, 100)
        seen: dict[str, list[float]] = {"small": [], "large": []}
        errors = 0
        ratios = []
        for _ in range(args.rounds):
            conns = args.connections
            _, small_errors, small_lat = await load(s_api.base + path, args.requests, conns)
            _, large_errors, large_lat = await load(l_api.base + path, args.requests, conns)
            errors += small_errors + large_errors
            seen["small"] += small_lat
            seen["large"] += large_lat
            ratios.append(p95(large_lat) / p95(small_lat))
    small_p95, large_p95 = p95(seen["small"]), p95(seen["large"])
    print(
        f"cold series 90d daily p95: small history {small_p95 * 1000:.1f} ms ({sizes[0]} B), "
        f"large history {large_p95 * 1000:.1f} ms ({sizes[1]} B); "
        f"ratio {large_p95 / small_p95:.2f}; per-round ratios median "
        f"{statistics.median(ratios):.2f} ({' '.join(f'{r:.2f}' for r in ratios)}); "
        f"errors {errors}"
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
    w.add_argument("--requests", type=int, default=3000, help="per round")
    w.add_argument("--rounds", type=int, default=5)
    w.add_argument("--in-process", action="store_true", help="servers on the client's loop")
    w.add_argument(
        "--endpoints", default="summary,series,summary_model", help="comma-separated, of those"
    )
    c = sub.add_parser("cold")
    c.add_argument("--small-url", required=True)
    c.add_argument("--large-url", required=True)
    c.add_argument("--requests", type=int, default=100, help="per round and history")
    c.add_argument("--rounds", type=int, default=20)
    c.add_argument("--connections", type=int, default=CONNECTIONS)
    c.add_argument("--in-process", action="store_true", help="servers on the client's loop")
    args: Any = parser.parse_args()
    asyncio.run(warm(args) if args.mode == "warm" else cold(args))


if __name__ == "__main__":
    main()
