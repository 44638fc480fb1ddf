"""Issue 9's protocol findings, over real sockets through the runner `serve` uses: undecodable
credentials are a 401, every error is JSON, no versions are revealed, slow headers are cut off,
a 500 is logged with its traceback, and no secret reaches a log line by any path."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace

import pytest
from aiohttp import web

from dashboard_metrics.exporter.api.routes import ROUTES
from dashboard_metrics.exporter.app import create_app
from dashboard_metrics.exporter.server import runner
from tests.harness import Harness
from tests.service_support import Reply, json_logs, served
from tests.test_api_support import seed
from tests.test_forward_auth import SECRET as SESSION
from tests.test_forward_auth import Gate, gate_server, template

KEYS = "key-alpha-7f3a9c=org_0001;key-omega-b81d44=*"
TOKEN = "metrics-token-5e2c0d"
SECRETS = ("key-alpha-7f3a9c", "key-omega-b81d44", TOKEN)
URL_SUMMARY = "/api/v1/unstract/org_0001/metrics/summary/"


def assert_json_error(reply: Reply, status: int) -> None:
    assert reply.status == status, reply
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    body = reply.json()
    assert body["type"] in {"client_error", "validation_error", "server_error"}
    assert body["errors"][0]["detail"]
    assert "Traceback" not in reply.body.decode()


def assert_no_versions(reply: Reply) -> None:
    assert reply.headers["server"] == "dashboard-metrics", reply.headers
    for word in ("aiohttp", "Python", "/3."):
        assert word not in reply.headers["server"]


async def test_undecodable_credentials_are_401_on_every_path(h: Harness) -> None:
    h.org()
    async with served(h, api_keys=KEYS, metrics_auth=f"bearer:{TOKEN}") as server:
        targets = [f"/api/v1/unstract/org_0001/metrics/{path}" for path in ROUTES]
        for target in [*targets, "/metrics"]:
            key = TOKEN if target == "/metrics" else "key-alpha-7f3a9c"
            for value in (
                f"Bearer {key}".encode() + b"\xff",
                b"Bearer \xff\xfe",
                b"Bearer " + key.encode() + b"\xc3\x28",
                b"Basic \xff",
                b"\xff\xfe " + key.encode(),
            ):
                raw = b"GET " + target.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                reply = await server.raw(raw + b"Authorization: " + value + b"\r\n\r\n")
                assert_json_error(reply, 401)
                assert "www-authenticate" in reply.headers
            good = await server.get(target, {"Authorization": f"Bearer {key}"})
            assert good.status in (200, 503) and good.status != 401, target


async def test_every_error_is_json_and_no_response_names_versions(h: Harness) -> None:
    h.org()
    async with served(h) as server:
        ok = await server.get("/api/v1/unstract/org_0001/metrics/summary/")
        assert ok.status == 200
        assert_no_versions(ok)
        for reply in (await server.get("/healthz"), await server.get("/metrics")):
            assert_no_versions(reply)
        cases: list[tuple[bytes, int]] = [
            (b"GET /no/such/path HTTP/1.1\r\nHost: x\r\n\r\n", 404),
            (b"GET /api/v1/unstract/org_0001/metrics/nope/ HTTP/1.1\r\nHost: x\r\n\r\n", 404),
            (
                b"POST /api/v1/unstract/org_0001/metrics/summary/ HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 0\r\n\r\n",
                405,
            ),
            (b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
            (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"b" * 9000 + b"\r\n\r\n", 431),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n", 400),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\n\r\n", 400),
            (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 400),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        ]
        for raw, status in cases:
            reply = await server.raw(raw)
            assert_json_error(reply, status)
            assert_no_versions(reply)
        not_allowed = await server.raw(
            b"PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        assert not_allowed.headers["allow"] == "GET,HEAD"


async def test_slow_request_headers_are_cut_off(h: Harness) -> None:
    h.org()
    async with served(h, http_header_timeout_seconds=0.5) as server:
        # Headers that never finish: a 408 in the JSON format, then the connection closes.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        began = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(65536), 5)
        rest = await asyncio.wait_for(reader.read(), 5)  # b"": closed by the server
        elapsed = time.monotonic() - began
        writer.close()
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert b'"request_timeout"' in head + rest
        assert 0.4 <= elapsed < 3, elapsed
        # A connection that sends nothing at all is closed as well.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 408 ")
        writer.close()
        # Headers sent slowly but within the bound are served; so is a kept-alive connection
        # idle longer than the header timeout between requests.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.1)
        first = await asyncio.wait_for(reader.readuntil(b'{"status": "ok"}'), 5)
        assert first.startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(0.8)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        second = await asyncio.wait_for(reader.read(), 5)
        assert second.startswith(b"HTTP/1.1 200 "), second
        writer.close()


async def test_a_500_is_json_for_the_client_and_a_traceback_in_the_log(h: Harness) -> None:
    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("boom-4d1c: a bug")

    app = create_app(h.settings, clock=h.clock, rollup=h.rollup, source=h.source)
    app.router.add_get("/broken", broken)
    served_app = runner(app)
    await served_app.setup()
    site = web.TCPSite(served_app, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with json_logs() as logs:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /broken HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
    finally:
        await served_app.cleanup()
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert b"boom-4d1c" not in answer and b"Traceback" not in answer
    assert b'"server_error"' in answer
    [record] = [json.loads(line) for line in logs.getvalue().splitlines() if "boom-4d1c" in line]
    assert record["level"] == "error"
    assert record["error"] == "RuntimeError: boom-4d1c: a bug"
    assert record["traceback"].startswith("Traceback (most recent call last):")
    assert 'in broken\n    raise RuntimeError("boom-4d1c: a bug")' in record["traceback"]


def malformed_requests(secret: str) -> list[bytes]:
    """Every way a request can fail before or during parsing, each carrying ``secret``."""
    key = secret.encode()
    path = b"/api/v1/unstract/org_0001/metrics/summary/"
    start = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
    return [
        start + b"Authorization: Bearer " + key + b"\n\r\n",  # a bare LF ends the line
        start + b"Authorization: Bearer " + key + b"\x00\r\n\r\n",
        start + b"Authorization: Bearer " + key + b"\xff\r\n\r\n",
        start + b"Authorization: Bearer " + key + b"\x7f\r\n\r\n",
        start + b"Authorization: Bearer " + key + b" " + b"x" * 9000 + b"\r\n\r\n",
        start + b"Authorization: " + key + b"\r\n\r\n",  # no scheme
        start + b"Authorization: Basic " + key + b"\r\n\r\n",
        start + b"X-Api-Key: " + key + b"\x00\r\n\r\n",
        start + b"Authorization:Bearer " + key + b"\r\nBad Header: x\r\n\r\n",
        start + b"Cookie: session=" + key + b"\x01\r\n\r\n",
        b"GET " + path + b"?api_key=" + key + b"&" + b"p" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET " + path + b"?api_key=" + key + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET " + path + key + b"\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + b"\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + b"\x00\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + b"\xfe\r\n\r\n",
        b"GET /metrics HTTP/7.7\r\nHost: x\r\nAuthorization: Bearer " + key + b"\r\n\r\n",
        b"\x16\x03\x01" + key + b"\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + key,
    ]


async def test_no_secret_reaches_a_log_line(h: Harness) -> None:
    h.org()
    async with served(h, api_keys=KEYS, metrics_auth=f"bearer:{TOKEN}") as server:
        with json_logs(logging.DEBUG) as logs:
            answered = 0
            for secret in SECRETS:
                for raw in malformed_requests(secret):
                    try:
                        reply = await server.raw(raw, timeout=5)
                    except (asyncio.IncompleteReadError, ConnectionError):
                        continue  # closed without an answer: still nothing may be logged
                    answered += 1
                    assert reply.status < 500, (raw[:80], reply)
                    for other in SECRETS:
                        assert other.encode() not in reply.body  # nor echoed to the client
                # Valid and rejected requests with the secret, as a client would send them.
                for target in ("/api/v1/unstract/org_0002/metrics/summary/", "/metrics"):
                    await server.get(target, {"Authorization": f"Bearer {secret}"})
                    await server.get(target, {"Authorization": f"Bearer {secret}x"})
            assert answered >= len(SECRETS) * 15
    text = logs.getvalue()
    assert "malformed request rejected" in text  # the paths above were logged...
    for secret in SECRETS:
        assert secret not in text  # ...without any key or token
        assert secret[:8] not in text


def test_the_log_formatter_scrubs_secrets_from_any_logger(h: Harness) -> None:
    """The last line of defence: a library that quotes a raw header (as aiohttp does in its
    parse errors) or a message that embeds a credential, on any logger."""
    create_app(replace(h.settings, api_keys=KEYS))  # registers the configured secrets
    quoted = repr(b"Authorization: Bearer " + SECRETS[0].encode() + b"\x00")
    with json_logs() as logs:
        library = logging.getLogger("some.library")
        try:
            raise ValueError(f"Invalid header value char:\n\n  {quoted}")
        except ValueError:
            library.exception("Error handling request")
        library.warning("retrying with %s", {"headers": {"Authorization": f"Bearer {SECRETS[1]}"}})
        library.error("connect failed: cookie: session=abc; token=%s", "opaque-value-9")
        library.info("called with Bearer %s", "never-configured-token")
        library.info("the key %s was rotated", SECRETS[1])
    text = logs.getvalue()
    assert text.count("[redacted]") >= 5
    for leaked in (*SECRETS[:2], "opaque-value-9", "never-configured-token"):
        assert leaked not in text, leaked


async def test_metrics_and_anonymous_endpoints_take_odd_headers(h: Harness) -> None:
    """Siblings of the Authorization finding: every header /metrics and the anonymous pages
    read, with undecodable or absurd values, is answered without a 5xx."""
    h.org()
    odd = [
        b"Accept: \xff\xfe",
        b"Accept: application/openmetrics-text; version=\xff",
        b"Accept: text/plain;q=nan, */*;q=-1",
        b"Accept-Encoding: \xffgzip",
        b"Accept-Encoding: gzip;q=\xff",
        b"X-Prometheus-Scrape-Timeout-Seconds: nan",
        b"X-Prometheus-Scrape-Timeout-Seconds: -inf",
        b"X-Prometheus-Scrape-Timeout-Seconds: 1e400",
        b"X-Prometheus-Scrape-Timeout-Seconds: \xff",
        b"Cookie: \xff=\xfe",
        b"Host: \xff",
    ]
    async with served(h, metrics_auth=f"bearer:{TOKEN}") as server:
        for target in ("/metrics", "/", "/healthz", "/readyz", "/api/openapi.json"):
            for header in odd:
                raw = b"GET " + target.encode() + b" HTTP/1.1\r\nConnection: close\r\n"
                if not header.startswith(b"Host:"):
                    raw += b"Host: x\r\n"
                raw += b"Authorization: Bearer " + TOKEN.encode() + b"\r\n" + header + b"\r\n\r\n"
                reply = await server.raw(raw)
                assert reply.status < 500, (target, header, reply)
                if reply.status >= 400:
                    assert_json_error(reply, reply.status)


async def test_undecodable_credentials_through_forward_auth_are_401(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The forward-auth sibling of the Authorization finding: bytes that are not UTF-8 in
    Cookie or Authorization cannot be forwarded as sent; a 401, not a 503 gate outage."""
    seed(h, orgs=1, events=3)
    gate = Gate()
    caplog.set_level(logging.INFO)
    async with gate_server(gate) as upstream, served(h, forward_auth_url=template(upstream)) as s:
        target = b"GET /api/v1/unstract/org_0001/metrics/summary/ HTTP/1.1\r\nHost: x\r\n"
        for header in (
            b"Cookie: sessionid=" + SESSION.encode() + b"\xff",
            b"Cookie: \xff\xfe=1",
            b"Authorization: Bearer \xff",
        ):
            reply = await s.raw(target + b"Connection: close\r\n" + header + b"\r\n\r\n")
            assert_json_error(reply, 401)
        assert gate.seen == []  # nothing was forwarded
        good = await s.get(URL_SUMMARY, {"Cookie": f"sessionid={SESSION}"})
        assert good.status == 200 and len(gate.seen) == 1
    assert "gate unreachable" not in caplog.text
