"""`/`: a small index page linking the OpenAPI document, /metrics and the health endpoints,
and, on a loopback or keyless deployment only, the organizations. JSON for
`Accept: application/json`."""

from __future__ import annotations

from html import escape
from typing import Any

from aiohttp import web
from sqlalchemy import select

from dashboard_metrics.core.schema import MONTHLY
from dashboard_metrics.core.settings import is_loopback
from dashboard_metrics.exporter.dbcall import run_db
from dashboard_metrics.exporter.keys import ROLLUP, SETTINGS

TITLE = "dashboard-metrics"
LINKS = {
    "openapi": "/api/openapi.json",
    "metrics": "/metrics",
    "healthz": "/healthz",
    "readyz": "/readyz",
}
ORG_ENDPOINTS = ("overview/", "summary/", "series/")


def _organizations(request: web.Request) -> list[str]:
    table = MONTHLY.table
    with request.app[ROLLUP].connect() as conn:
        rows = conn.execute(
            select(table.c.organization_id).distinct().order_by(table.c.organization_id)
        )
        return [row.organization_id for row in rows]


def lists_organizations(request: web.Request) -> bool:
    settings = request.app[SETTINGS]
    keyless = not settings.api_keys and not settings.forward_auth_url
    return keyless or is_loopback(settings.host)


def org_links(org: str) -> dict[str, str]:
    return {e.rstrip("/"): f"/api/v1/unstract/{org}/metrics/{e}" for e in ORG_ENDPOINTS}


def _html(body: dict[str, Any]) -> str:
    items = "".join(
        f'<li><a href="{escape(url)}">{escape(name)}</a> <code>{escape(url)}</code></li>'
        for name, url in body["links"].items()
    )
    orgs = ""
    if "organizations" in body:
        rows = "".join(
            f"<li><code>{escape(o['organization_id'])}</code> "
            + " ".join(f'<a href="{escape(u)}">{escape(n)}</a>' for n, u in o["links"].items())
            + "</li>"
            for o in body["organizations"]
        )
        orgs = f"<h2>Organizations</h2><ul>{rows or '<li>none yet</li>'}</ul>"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{TITLE}</title></head>"
        f"<body><h1>{TITLE}</h1><p>Usage metrics: JSON API, Prometheus metrics, health.</p>"
        f"<ul>{items}</ul>{orgs}</body></html>"
    )


async def index(request: web.Request) -> web.Response:
    body: dict[str, Any] = {"service": TITLE, "links": dict(LINKS)}
    if lists_organizations(request):
        found = await run_db(lambda: _organizations(request))
        body["organizations"] = [{"organization_id": o, "links": org_links(o)} for o in found]
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(body)
    return web.Response(text=_html(body), content_type="text/html")


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
