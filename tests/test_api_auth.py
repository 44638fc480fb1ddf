"""The auth matrix: every endpoint with no key, a wrong key, another organization's key, the
right key and an all-organizations key."""

from __future__ import annotations

import logging

import pytest

from dashboard_metrics.core.setting_types import ConfigError
from dashboard_metrics.exporter.api.routes import ROUTES
from dashboard_metrics.exporter.auth import parse_keys
from tests.harness import Harness
from tests.test_api_support import client

KEYS = "key-a=org_0001,org_0003;key-b=org_0002;key-all=*"


async def test_every_endpoint_enforces_keys(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h.org()
    h.org()
    cases = [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic key-a"}, 401),
        ({"Authorization": "Bearer key-b"}, 403),
        ({"Authorization": "Bearer key-a"}, 200),
        ({"Authorization": "bearer  key-all"}, 200),
    ]
    async with client(h, api_keys=KEYS) as c:
        for path in ROUTES:
            for headers, status in cases:
                response = await c.get(f"/api/v1/unstract/org_0001/metrics/{path}", headers=headers)
                body = await response.json()
                assert response.status == status, (path, headers, body)
                if status != 200:
                    assert body["type"] == "client_error"
                    assert body["errors"][0]["code"] in {
                        "not_authenticated",
                        "authentication_failed",
                        "permission_denied",
                    }
                if status == 401:
                    assert response.headers["WWW-Authenticate"] == "Bearer"
        for anonymous in ("/healthz", "/readyz", "/api/openapi.json"):
            assert (await c.get(anonymous)).status == 200
    for key in ("key-a", "key-b", "key-all", "wrong"):
        assert key not in caplog.text


async def test_no_keys_means_open(h: Harness) -> None:
    async with client(h) as c:
        response = await c.get("/api/v1/unstract/anything/metrics/summary/")
        assert response.status == 200


def test_key_format_is_validated_without_echoing_keys() -> None:
    grants = parse_keys(" a = org_1 , org_2 ; b=* ;")
    assert [sorted(g.orgs) for g in grants] == [["org_1", "org_2"], ["*"]]
    for bad in ("secret-key", "secret-key=", "=org_1", "k=org;secret-two"):
        with pytest.raises(ConfigError) as info:
            parse_keys(bad)
        assert "secret" not in str(info.value)
