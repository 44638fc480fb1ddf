"""Issue 9's parameter findings, and their siblings on every endpoint: each bad input is a 400
naming the parameter (never a 5xx), every parameter is honoured or refused, links never come
from the request's Host header. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

import pytest

from dashboard_metrics.core.catalogue import METRICS
from dashboard_metrics.exporter.api.routes import ROUTES
from dashboard_metrics.exporter.openapi import document, parameter_names
from tests.harness import Harness
from tests.service_support import Reply, served
from tests.test_api_support import client, seed

BASE = "/api/v1/unstract/{org}/metrics/"
DATED = ["summary/", "series/", "overview/", "live-summary/", "live-series/"]
DATED_ALL = [*DATED, "workflow-token-usage/"]
FILTERED = ["", "summary/", "series/", "live-summary/", "live-series/"]


def assert_400(body: dict[str, Any], status: int, attrs: set[str], where: Any) -> None:
    assert status == 400, (where, status, body)
    assert body["type"] == "validation_error", where
    assert body["errors"][0]["attr"] in attrs, (where, body)
    assert body["errors"][0]["detail"], where


# Past either end of the calendar once the default start (end - 30 days) or hour rounding is
# applied, in UTC and in local time; and just outside the accepted window.
EXTREME: list[tuple[dict[str, str], set[str]]] = [
    ({"end_date": "0001-01-05"}, {"end_date"}),
    ({"end_date": "0001-01-01T00:00:00Z"}, {"end_date"}),
    ({"end_date": "0001-01-01T00:00:00+01:00"}, {"end_date"}),
    ({"end_date": "9999-12-31T23:30:00Z"}, {"end_date"}),
    ({"start_date": "9999-12-30", "end_date": "9999-12-31"}, {"start_date", "end_date"}),
    ({"end_date": "9999-12-31T23:59:59.999999"}, {"end_date"}),
    ({"end_date": "9999-12-31T23:59:59-14:00"}, {"end_date"}),
    ({"start_date": "0001-01-01", "end_date": "0001-01-02", "tz": "Asia/Tokyo"}, {"end_date"}),
    ({"start_date": "1969-12-31T23:59:59Z"}, {"start_date"}),
    ({"end_date": "9000-01-01T00:00:00Z"}, {"end_date"}),
]


async def test_extreme_dates_are_400_on_every_dated_endpoint(h: Harness) -> None:
    h.org()
    async with client(h) as c:
        for path in DATED_ALL:
            for query, attrs in EXTREME:
                response = await c.get(BASE.format(org="org_0001") + path, params=query)
                assert_400(await response.json(), response.status, attrs, (path, query))


async def test_bad_organization_ids_are_400_and_not_an_outage(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL reached PostgreSQL as a query parameter: a 503 logged as a database outage."""
    h.org()
    caplog.set_level(logging.INFO)
    bad = ["org%00x", "org%01x", "org%0Ax", "org%7Fx", "o" * 65]
    async with client(h) as c:
        for path in ROUTES:
            for org in bad:
                response = await c.get(f"/api/v1/unstract/{org}/metrics/{path}")
                assert_400(await response.json(), response.status, {"org_id"}, (org, path))
        metrics = await (await c.get("/metrics")).text()
    assert "dashboard_metrics_database_up 1.0" in metrics
    assert "database unavailable" not in caplog.text


async def test_text_filters_refuse_control_characters_and_overlong_values(h: Harness) -> None:
    h.org()
    async with client(h) as c:
        for path in FILTERED:
            for name in ("project", "tag"):
                for raw in ("a%00b", "a%0Ab", "a%1Fb", "x" * 65):
                    url = f"{BASE.format(org='org_0001')}{path}?{name}={raw}"
                    response = await c.get(url)
                    assert_400(await response.json(), response.status, {name}, url)
        response = await c.get(BASE.format(org="org_0001") + "summary/?tz=Europe%00Berlin")
        assert_400(await response.json(), response.status, {"tz"}, "tz with NUL")


async def test_metric_name_is_validated_against_the_catalogue(h: Harness) -> None:
    h.org()
    async with client(h) as c:
        for path in FILTERED:
            for bogus in ("bogus", "LLM_CALLS", "llm_calls ", ""):
                response = await c.get(
                    BASE.format(org="org_0001") + path, params={"metric_name": bogus}
                )
                body = await response.json()
                assert_400(body, response.status, {"metric_name"}, (path, bogus))
                for name in METRICS:
                    assert name in body["errors"][0]["detail"]
            good = await c.get(
                BASE.format(org="org_0001") + path, params={"metric_name": "llm_calls"}
            )
            assert good.status == 200, path
    # The document declares the same set, so clients see it before they call.
    for path_item in document()["paths"].values():
        for parameter in path_item.get("get", {}).get("parameters", []):
            if parameter["name"] == "metric_name":
                assert sorted(parameter["schema"]["enum"]) == sorted(METRICS)


async def test_live_endpoints_honour_project_and_tag_like_the_rollups(h: Harness) -> None:
    org = seed(h, orgs=1, events=15)[0].string_id
    start = {"start_date": "2026-03-13T00:00:00Z"}
    async with client(h) as c:

        async def summary(path: str, **query: str) -> list[dict[str, Any]]:
            response = await c.get(BASE.format(org=org) + path, params={**start, **query})
            assert response.status == 200, (path, query)
            return list((await response.json())["summary"])

        everything = await summary("live-summary/")
        assert everything and everything == await summary("summary/")
        for query in ({"project": "nonexistent"}, {"tag": "x"}, {"project": "default", "tag": "t"}):
            assert (
                await summary("live-summary/", **query) == [] == await summary("summary/", **query)
            )
        for query in ({"project": "default"}, {"tag": ""}, {"project": "default", "tag": ""}):
            assert await summary("live-summary/", **query) == everything
        series = await c.get(
            BASE.format(org=org) + "live-series/", params={**start, "project": "nonexistent"}
        )
        assert (await series.json())["series"] == []


async def test_zones_with_partial_hour_offsets_are_400_everywhere(h: Harness) -> None:
    h.org()
    async with client(h) as c:
        for path in DATED_ALL:
            for tz in ("Asia/Kolkata", "Asia/Kathmandu", "Australia/Adelaide"):
                response = await c.get(BASE.format(org="org_0001") + path, params={"tz": tz})
                assert_400(await response.json(), response.status, {"tz"}, (path, tz))
            ok = await c.get(BASE.format(org="org_0001") + path, params={"tz": "Asia/Tokyo"})
            assert ok.status == 200, path


# Full-width and Arabic-Indic one are digits to int(), not to the API.
LENIENT = ["+1", " 1", "1 ", "1_0", "\uff11", "\u0661", "1.0", "0x1", "1e1", "-1", "9" * 40]


async def test_integers_are_ascii_digits_only(h: Harness) -> None:
    h.org()
    async with client(h) as c:
        cases = [("", "page"), ("", "page_size"), ("recent-activity/", "limit")]
        for path, name in cases:
            for raw in LENIENT:
                url = f"{BASE.format(org='org_0001')}{path}?{name}={quote(raw)}"
                response = await c.get(url)
                assert_400(await response.json(), response.status, {name}, url)
            ok = await c.get(f"{BASE.format(org='org_0001')}{path}?{name}=1")
            assert ok.status == 200, (path, name)


async def test_unknown_and_repeated_parameters_are_400_on_every_endpoint(h: Harness) -> None:
    h.org()
    accepted = parameter_names()
    async with client(h) as c:
        for path in ROUTES:
            url = BASE.format(org="org_0001") + path
            response = await c.get(f"{url}?junk=1")
            body = await response.json()
            assert_400(body, response.status, {"junk"}, path)
            for name in accepted[path]:
                assert name in body["errors"][0]["detail"], (path, name)
            for name in sorted(accepted[path])[:2]:
                response = await c.get(f"{url}?{name}=&{name}=")
                assert_400(await response.json(), response.status, {name}, (path, name))
            # A declared parameter given empty is refused, not silently defaulted; except the
            # text filters, where "" is a value (the default tag is the empty one).
            for name in accepted[path] - {"project", "tag"}:
                response = await c.get(f"{url}?{name}=")
                assert_400(await response.json(), response.status, {name}, (path, name))
            if "tag" in accepted[path]:
                assert (await c.get(f"{url}?tag=&project=default")).status == 200


async def test_pagination_links_never_come_from_the_host_header(h: Harness) -> None:
    seed(h, orgs=1, events=40)
    async with served(h) as server:
        url = BASE.format(org="org_0001") + "?page_size=2&page=2&ordering=timestamp"
        replies: list[Reply] = [
            await server.get(url, {"Host": host})
            for host in ("evil.example", "evil.example:443", "127.0.0.1")
        ]
    bodies = [reply.json() for reply in replies]
    for reply, body in zip(replies, bodies, strict=True):
        assert reply.status == 200
        assert body["next"].startswith(BASE.format(org="org_0001") + "?")
        assert body["previous"].startswith(BASE.format(org="org_0001") + "?")
        assert "page=3" in body["next"] and "page=1" in body["previous"]
        assert "ordering=timestamp" in body["next"] and "page_size=2" in body["next"]
    assert bodies[0] == bodies[1] == bodies[2]  # the Host header changes nothing


async def test_ranges_of_millennia_do_not_hold_the_event_loop(h: Harness) -> None:
    """overview/ takes any valid range: checking a zone's offsets and planning must not walk
    its hours or days (1970..9000 held the loop for minutes; every other request waited)."""
    org = seed(h, orgs=1, events=10)[0].string_id
    far = {"start_date": "1970-01-01T00:30:00Z", "end_date": "8999-12-31T23:30:00Z"}
    async with client(h) as c:
        began = time.monotonic()
        for tz, status in (
            ("Asia/Tokyo", 200),
            ("Australia/Lord_Howe", 400),
            ("Asia/Kolkata", 400),
        ):
            response = await c.get(BASE.format(org=org) + "overview/", params={**far, "tz": tz})
            assert response.status == status, (tz, await response.text())
        # Lord Howe is +10:30 in (southern) winter and +11 in summer: a range inside its
        # summer is fine, one in its winter is not.
        winter = {"start_date": "2025-06-01T00:00:00Z", "end_date": "2025-07-01T00:00:00Z"}
        summer = {"start_date": "2025-12-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"}
        for rng, status in ((winter, 400), (summer, 200)):
            query = {**rng, "tz": "Australia/Lord_Howe"}
            response = await c.get(BASE.format(org=org) + "overview/", params=query)
            assert response.status == status, (rng, await response.text())
        assert time.monotonic() - began < 10
