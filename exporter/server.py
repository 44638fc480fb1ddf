"""Serving the app: aiohttp's protocol with the service's own answers where aiohttp would
answer by itself.

- Malformed requests (bad header bytes, lines too long) get the JSON error format, and are
  logged without the offending bytes: aiohttp quotes the raw header line, key included.
- A request's headers must arrive within ``http_header_timeout_seconds`` (slow-header clients
  are cut off with a 408 instead of holding a connection for the keep-alive timeout).
- No response names the server's software versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from dashboard_metrics.exporter.api.errors import error_body, error_response
from dashboard_metrics.exporter.keys import SETTINGS

log = logging.getLogger("dashboard_metrics.http")

SERVER_NAME = "dashboard-metrics"
KEEPALIVE_SECONDS = 75.0  # aiohttp's run_app default, between requests on one connection
_REASONS = {400: "bad_request", 408: "request_timeout", 414: "uri_too_long"}
_REASONS |= {431: "header_fields_too_large", 500: "error", 504: "timeout"}


def _status_of(exc: HttpProcessingError) -> int:
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""
        # The request target is the only over-long line that starts with "/"; otherwise it is
        # a header line.
        return 414 if bytes(line).startswith(b"/") else 431
    return 400


class HardenedHandler(RequestHandler):
    def __init__(self, manager: web.Server, *, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    # -- slow headers -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_header_timer()  # the first request's headers are due from the start

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and not self._request_in_progress and not self._messages:
            self._start_header_timer()  # the first bytes of the next request
        super().data_received(data)
        if self._messages or self._request_in_progress:
            self._stop_header_timer()  # the headers are complete

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        if self._header_timeout > 0:
            self._header_timer = self._loop.call_later(self._header_timeout, self._too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport is None or self._messages or self._request_in_progress:
            return
        body = error_body(408, "request_timeout", "The request headers took too long.")
        head = (
            f"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nServer: {SERVER_NAME}\r\n\r\n"
        )
        transport.write(head.encode() + body)
        log.info("request headers timed out", extra={"fields": {"seconds": self._header_timeout}})
        self.force_close()

    # -- errors aiohttp answers itself ----------------------------------------------------------
    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            status = _status_of(exc)
            # Only the kind: the exception's text quotes the raw request line or header.
            log.info(
                "malformed request rejected",
                extra={"fields": {"status": status, "error": type(exc).__name__}},
            )
            detail = "Malformed HTTP request."
        else:
            if status >= 500:
                log.error("request failed", exc_info=exc)
            detail = "Internal error." if status == 500 else "The request could not be answered."
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        response = error_response(status, _REASONS.get(status, "error"), detail)
        response.headers[hdrs.SERVER] = SERVER_NAME
        response.force_close()
        return response


class HardenedServer(web.Server):
    def __call__(self) -> RequestHandler:
        return HardenedHandler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An AppRunner whose connections use `HardenedHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = HardenedServer  # same state; only the protocol factory differs
        return server


def runner(app: web.Application, **kwargs: Any) -> Runner:
    settings = app[SETTINGS]
    return Runner(
        app,
        access_log=None,
        keepalive_timeout=KEEPALIVE_SECONDS,
        header_timeout=settings.http_header_timeout_seconds,
        **kwargs,
    )


def run_app(
    app: web.Application,
    *,
    sock: socket.socket | None = None,
    host: str | None = None,
    port: int | None = None,
    on_ready: Callable[[], None] = lambda: None,
) -> None:
    """``web.run_app`` with `Runner`: serve until SIGINT/SIGTERM, then shut down cleanly."""

    async def main() -> None:
        served = runner(app, handle_signals=True)
        await served.setup()
        try:
            if sock is not None:
                await web.SockSite(served, sock).start()
            else:
                await web.TCPSite(served, host, port).start()
            on_ready()
            await asyncio.Event().wait()  # until a signal raises GracefulExit
        finally:
            await served.cleanup()

    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(main())
