"""Helpers for the service-hardening tests (no tests here): the app served by the production
runner on a real port, raw HTTP/1.1 exchanges, and captured JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from dashboard_metrics.core.logs import JsonFormatter
from dashboard_metrics.exporter.api.context import API
from dashboard_metrics.exporter.app import create_app
from dashboard_metrics.exporter.server import runner
from tests.harness import Harness


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    app: web.Application
    port: int

    async def raw(self, data: bytes, timeout: float = 10.0) -> Reply:
        """Send ``data`` as is and read the answer until the server closes or it is complete."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            await writer.drain()
            return await asyncio.wait_for(read_reply(reader), timeout)
        finally:
            writer.close()

    async def get(self, target: str, headers: dict[str, str] | None = None) -> Reply:
        headers = {"Host": "127.0.0.1", "Connection": "close", **(headers or {})}
        lines = [f"GET {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
        return await self.raw(("\r\n".join(lines) + "\r\n\r\n").encode())


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    body = await (reader.readexactly(int(length)) if length else reader.read())
    return Reply(int(status_line.split()[1]), headers, body)


@asynccontextmanager
async def served(h: Harness, **settings: Any) -> AsyncIterator[Served]:
    """``create_app`` on 127.0.0.1 through `exporter.server.runner`, as `serve` runs it."""
    app = create_app(
        replace(h.settings, **settings), clock=h.clock, rollup=h.rollup, source=h.source
    )
    app[API].state_ttl = 0.0
    served_app = runner(app)
    await served_app.setup()
    site = web.TCPSite(served_app, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Served(app, port)
    finally:
        await served_app.cleanup()


@contextmanager
def json_logs(level: int = logging.DEBUG) -> Iterator[io.StringIO]:
    """Every log record of the process, formatted by the service's own JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
