"""/metrics while the rollup database is unreachable: 200 with the service's own metrics,
database_up 0 and no usage families; back to full answers without a restart.

The service reaches PostgreSQL through a TCP proxy the test controls: refusing connections
(database stopped) or swallowing them (a network black hole)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.metrics.handler import GATE, MAX_STUCK_READS
from tests.conftest import reset_pg
from tests.harness import FakeClock, Harness, utc
from tests.test_metrics_helpers import (
    NS,
    assert_matches_oracle,
    parse,
    populate,
    scrape,
    serving,
    value,
)


class Proxy:
    """127.0.0.1:<port> -> PostgreSQL; ``stop()`` closes everything, ``blackhole`` holds new
    connections without a byte forwarded."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.blackhole = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        for task in list(self._pumps):
            task.cancel()
        self._pumps.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.blackhole:
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for task in (pump(reader, up_writer), pump(up_reader, writer)):
            self._pumps.add(asyncio.ensure_future(task))


@pytest.fixture
def pg(pg_database: str, tmp_path: Path) -> Harness:
    reset_pg(pg_database)
    return Harness(
        Settings(data_dir=tmp_path, database_url=pg_database), FakeClock(utc(2026, 3, 15, 12, 30))
    )


@contextlib.asynccontextmanager
async def proxied(h: Harness) -> AsyncIterator[Proxy]:
    proxy = Proxy(5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def promtool_ok(body: str) -> bool:
    done = subprocess.run(["promtool", "check", "metrics"], input=body, text=True, timeout=60)
    return done.returncode == 0


async def test_database_down_then_back(pg: Harness) -> None:
    h = pg
    try:
        populate(h, [h.org(), h.org()])
        h.aggregator.tick()
        async with proxied(h) as proxy:
            url = h.settings.rollup_url.replace(":5432/", f":{proxy.port}/")
            async with serving(h, database_url=url) as client:
                up = parse(await scrape(client))
                assert value(up, "dashboard_metrics_database_up") == 1
                assert_matches_oracle(up, h)

                await proxy.stop()  # the database is gone, pooled connections too
                text = await scrape(client)
                down = parse(text)
                assert value(down, "dashboard_metrics_database_up") == 0
                assert not [name for name, _ in down if name.startswith(f"{NS}_")]
                assert value(down, "dashboard_metrics_build_info", version="0.1.0") == 1
                assert value(down, "dashboard_metrics_ticks_total") is None  # unknown, not 0
                assert promtool_ok(text)

                await proxy.start()  # same port: no restart of the service
                back = parse(await scrape(client))
                assert value(back, "dashboard_metrics_database_up") == 1
                assert_matches_oracle(back, h)
                assert value(back, "dashboard_metrics_ticks_total") == 1

                # A black hole: each scrape gives up within Prometheus's scrape timeout, and
                # once MAX_STUCK_READS abandoned reads are stuck, scrapes stop trying.
                await proxy.stop()
                proxy.blackhole = True
                await proxy.start()
                loop = asyncio.get_running_loop()
                timeout = {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
                gate = client.app[GATE] if client.app else None
                assert gate is not None
                for attempt in range(MAX_STUCK_READS + 1):
                    began = loop.time()
                    hole = parse(await scrape(client, **timeout))
                    assert value(hole, "dashboard_metrics_database_up") == 0
                    assert loop.time() - began < (1.5 if attempt < MAX_STUCK_READS else 0.5)
                assert gate.stuck == MAX_STUCK_READS
                await proxy.stop()  # releases the connection attempts held by the hole
                proxy.blackhole = False
                await proxy.start()
                for _ in range(200):  # bounded: the stuck threads see the connection close
                    if not gate.stuck:
                        break
                    await asyncio.sleep(0.02)
                back = parse(await scrape(client, **timeout))
                assert value(back, "dashboard_metrics_database_up") == 1
                assert_matches_oracle(back, h)
    finally:
        h.dispose()
