"""Forward auth against a stand-in for Unstract's backend (issue 12): member, non-member, bad
cookie, gate down (error, no answer, refused), cache expiry, only Cookie and Authorization
forwarded, bearer keys beside it, and the cookie never in a log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dashboard_metrics.core.setting_types import ConfigError
from dashboard_metrics.core.settings import Settings, from_env
from dashboard_metrics.exporter.api.forward_auth import FORWARD_AUTH, ForwardAuth
from dashboard_metrics.exporter.serve import check_bind
from tests.harness import Harness
from tests.test_api_support import client, seed

SECRET = "s3cr3t-session-value-7f1d"
SESSIONS = {SECRET: "org_0001", "bob-session-2b9c": "org_0002"}  # session -> its organization
PROFILE = "/api/v1/unstract/{org_id}/users/profile/"


@dataclass
class Gate:
    """Unstract's CustomAuthMiddleware in small: no or unknown session 401, a session of
    another organization 403, else 200 (the profile)."""

    mode: str = "up"  # up | error | slow
    seen: list[dict[str, str]] = field(default_factory=list)

    async def profile(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        if self.mode == "error":
            return web.json_response({"message": "boom"}, status=502)
        if self.mode == "slow":
            await asyncio.sleep(2)
        session = request.cookies.get("sessionid")
        if session not in SESSIONS:
            return web.json_response({"message": "Unauthorized"}, status=401)
        if SESSIONS[session] != request.match_info["org_id"]:
            return web.json_response({"message": "Organization access denied"}, status=403)
        return web.json_response({"user": "someone"})


@asynccontextmanager
async def gate_server(gate: Gate) -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get(PROFILE, gate.profile)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def template(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}{PROFILE}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_clock(c: TestClient[Any, Any]) -> Clock:
    clock = Clock()
    c.server.app[FORWARD_AUTH].monotonic = clock
    return clock


URL = "/api/v1/unstract/{org}/metrics/summary/"


async def get(c: TestClient[Any, Any], org: str, **headers: str) -> tuple[int, dict[str, Any]]:
    response = await c.get(URL.format(org=org), headers=headers)
    return response.status, await response.json()


async def test_member_non_member_and_bad_cookie(h: Harness) -> None:
    seed(h, orgs=2, events=3)
    gate = Gate()
    async with gate_server(gate) as server, client(h, forward_auth_url=template(server)) as c:
        status, body = await get(c, "org_0001", Cookie=f"sessionid={SECRET}")
        assert status == 200 and body["summary"], body
        status, body = await get(c, "org_0002", Cookie=f"sessionid={SECRET}")  # not a member
        assert status == 403 and body["message"], body
        status, body = await get(c, "org_0001", Cookie="sessionid=forged")
        assert status == 401 and body["message"], body
        status, body = await get(c, "org_0001")  # no credentials at all
        assert status == 401, body
        # Every path under the API is behind it, with the same outcomes.
        response = await c.get("/api/v1/unstract/org_0001/metrics/recent-activity/?limit=5")
        assert response.status == 401


async def test_only_cookie_and_authorization_are_forwarded(h: Harness) -> None:
    seed(h, orgs=1, events=2)
    gate = Gate()
    async with gate_server(gate) as server, client(h, forward_auth_url=template(server)) as c:
        headers = {
            "Cookie": f"sessionid={SECRET}; csrftoken=abc",
            "Authorization": "Bearer unstract-platform-key",
            "X-Forwarded-For": "10.0.0.9",
            "X-Custom": "never",
        }
        status, _body = await get(c, "org_0001", **headers)
        assert status == 200
        [seen] = gate.seen
        assert seen["Cookie"] == headers["Cookie"]
        assert seen["Authorization"] == headers["Authorization"]
        assert "X-Custom" not in seen and "X-Forwarded-For" not in seen


async def test_gate_down_is_503_and_never_remembered(h: Harness) -> None:
    seed(h, orgs=1, events=2)
    gate = Gate(mode="error")
    cookie = {"Cookie": f"sessionid={SECRET}"}
    async with (
        gate_server(gate) as server,
        client(h, forward_auth_url=template(server), forward_auth_timeout_seconds=0.3) as c,
    ):
        status, body = await get(c, "org_0001", **cookie)
        assert status == 503 and body["message"], body
        gate.mode = "slow"  # no answer within the timeout
        status, body = await get(c, "org_0001", **cookie)
        assert status == 503, body
        gate.mode = "up"
        status, _body = await get(c, "org_0001", **cookie)
        assert status == 200
        port = server.port
    # Nothing listens any more: refused connections fail closed too.
    async with client(h, forward_auth_url=f"http://127.0.0.1:{port}{PROFILE}") as c:
        status, body = await get(c, "org_0001", **cookie)
        assert status == 503, body


async def test_positive_answers_are_kept_for_the_ttl_only(h: Harness) -> None:
    seed(h, orgs=2, events=2)
    gate = Gate()
    async with gate_server(gate) as server, client(h, forward_auth_url=template(server)) as c:
        clock = fake_clock(c)
        cookie = {"Cookie": f"sessionid={SECRET}"}
        assert (await get(c, "org_0001", **cookie))[0] == 200
        assert (await get(c, "org_0001", **cookie))[0] == 200
        assert len(gate.seen) == 1  # the second one was remembered
        # Another organization or other credentials are another key.
        assert (await get(c, "org_0002", **cookie))[0] == 403
        assert (await get(c, "org_0002", **cookie))[0] == 403
        assert len(gate.seen) == 3  # negative answers are asked again
        # The session ends at Unstract: still allowed until the TTL (30 s) runs out.
        del SESSIONS[SECRET]
        try:
            clock.now += 29.9
            assert (await get(c, "org_0001", **cookie))[0] == 200
            assert len(gate.seen) == 3
            clock.now += 0.2
            assert (await get(c, "org_0001", **cookie))[0] == 401
            assert len(gate.seen) == 4
        finally:
            SESSIONS[SECRET] = "org_0001"


async def test_bearer_keys_work_beside_it(h: Harness) -> None:
    seed(h, orgs=2, events=2)
    gate = Gate()
    async with (
        gate_server(gate) as server,
        client(h, forward_auth_url=template(server), api_keys="k1=org_0001") as c,
    ):
        assert (await get(c, "org_0001", Authorization="Bearer k1"))[0] == 200
        status, body = await get(c, "org_0002", Authorization="Bearer k1")
        assert status == 403 and body["message"]  # a key never reads another organization
        assert gate.seen == []  # a valid key decides alone
        # Not one of our keys: the gate decides (with the Authorization header forwarded).
        status, _body = await get(c, "org_0001", Authorization="Bearer other")
        assert status == 401 and gate.seen[-1]["Authorization"] == "Bearer other"
        cookie = f"sessionid={SECRET}"
        assert (await get(c, "org_0001", Authorization="Bearer other", Cookie=cookie))[0] == 200


async def test_the_cookie_is_never_logged(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    seed(h, orgs=2, events=2)
    gate = Gate()
    caplog.set_level(logging.DEBUG)
    cookie = {"Cookie": f"sessionid={SECRET}", "Authorization": f"Bearer {SECRET}"}
    async with (
        gate_server(gate) as server,
        client(h, forward_auth_url=template(server), forward_auth_timeout_seconds=0.3) as c,
    ):
        for mode in ("up", "error", "slow"):
            gate.mode = mode
            for org in ("org_0001", "org_0002"):
                await get(c, org, **cookie)
                await get(c, org, Cookie="sessionid=forged")
    assert gate.seen  # the gate was asked
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.__dict__)
    assert "forward auth gate" in caplog.text  # the failures were logged, by kind


def test_forward_auth_settings() -> None:
    assert Settings().forward_auth_ttl_seconds == 30
    settings = from_env(
        {
            "DASHBOARD_METRICS_FORWARD_AUTH_URL": "http://backend:8000" + PROFILE,
            "DASHBOARD_METRICS_FORWARD_AUTH_TTL_SECONDS": "5",
        }
    )
    assert settings.forward_auth_ttl_seconds == 5
    for bad in ("http://backend:8000/users/profile/", "backend" + PROFILE):
        with pytest.raises(ConfigError, match="FORWARD_AUTH_URL"):
            from_env({"DASHBOARD_METRICS_FORWARD_AUTH_URL": bad})
    with pytest.raises(ConfigError, match="FORWARD_AUTH_TTL_SECONDS"):
        from_env({"DASHBOARD_METRICS_FORWARD_AUTH_TTL_SECONDS": "-1"})
    gate = ForwardAuth("http://b" + PROFILE, 0, 1)
    assert gate.url("org/../x") == "http://b/api/v1/unstract/org%2F..%2Fx/users/profile/"
    gate._remember(b"k")  # a TTL of 0 keeps nothing
    assert not gate._remembered(b"k")


def test_forward_auth_counts_as_auth_for_binding() -> None:
    url = "http://backend:8000" + PROFILE
    check_bind(Settings(host="0.0.0.0", forward_auth_url=url))  # no ConfigError
    with pytest.raises(ConfigError, match="FORWARD_AUTH_URL"):
        check_bind(Settings(host="0.0.0.0"))


async def test_the_index_lists_no_organizations_behind_forward_auth(h: Harness) -> None:
    seed(h, orgs=1, events=1)
    url = "http://127.0.0.1:9" + PROFILE
    async with client(h, forward_auth_url=url, host="0.0.0.0") as c:
        body = await (await c.get("/", headers={"Accept": "application/json"})).json()
        assert "org_0001" not in str(body)
