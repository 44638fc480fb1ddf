"""`/`: the index page links the API's document, /metrics and health, and lists the
organizations only on a loopback or keyless deployment (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from html.parser import HTMLParser

from aiohttp.test_utils import TestClient, TestServer

from dashboard_metrics.exporter.app import create_app
from tests import oracle
from tests.harness import Harness


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [value or "" for name, value in attrs if tag == "a" and name == "href"]


def _seed(h: Harness) -> set[str]:
    orgs = [h.org(), h.org()]
    for org in orgs:
        org.usage(h.clock().replace(hour=1))
    h.aggregator.tick()
    engine_events = oracle.events(h.source)
    return {org for org, *_rest in engine_events}


async def _get(h: Harness, settings_changes: dict[str, object], accept: str) -> tuple[int, str]:
    app = create_app(
        replace(h.settings, **settings_changes), clock=h.clock, rollup=h.rollup, source=h.source
    )
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/", headers={"Accept": accept})
        return response.status, await response.text()


async def test_index_links_everything_and_the_organizations(h: Harness) -> None:
    expected = _seed(h)
    assert len(expected) == 2
    status, page = await _get(h, {}, "text/html")
    assert status == 200 and page.startswith("<!doctype html>")
    parser = Links()
    parser.feed(page)
    fixed = {"/api/openapi.json", "/metrics", "/healthz", "/readyz"}
    assert fixed <= set(parser.hrefs)
    for org in expected:
        assert f"/api/v1/unstract/{org}/metrics/overview/" in parser.hrefs
    app = create_app(h.settings, clock=h.clock, rollup=h.rollup, source=h.source)
    async with TestClient(TestServer(app)) as client:
        for href in parser.hrefs:  # every link on the page answers
            response = await client.get(href)
            assert response.status == 200, href
        response = await client.get("/", headers={"Accept": "application/json"})
        body = await response.json()
    assert set(body["links"].values()) == fixed
    assert {o["organization_id"] for o in body["organizations"]} == expected


async def test_index_hides_organizations_on_a_keyed_public_deployment(h: Harness) -> None:
    expected = _seed(h)
    public = {"host": "0.0.0.0", "api_keys": "k1=*"}
    status, page = await _get(h, public, "application/json")
    assert status == 200
    assert '"organizations"' not in page and "/metrics" in page
    status, html = await _get(h, public, "text/html")
    assert not any(org in html for org in expected)
    for shown in ({"host": "0.0.0.0", "allow_unauthenticated": True}, {"api_keys": "k1=*"}):
        _status, html = await _get(h, shown, "text/html")  # keyless, or loopback
        assert all(org in html for org in expected), shown
