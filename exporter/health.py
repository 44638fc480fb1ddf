"""Liveness and readiness: anonymous, cheap, never a traceback."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from aggregator.db import first_line
from exporter.cache import CACHE
from exporter.dbcall import run_db
from exporter.keys import ROLLUP


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def database_check(request: web.Request) -> dict[str, str]:
    engine = request.app[ROLLUP]
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}
    except SQLAlchemyError as exc:
        return {"status": "error", "message": first_line(exc)}


async def readyz(request: web.Request) -> web.Response:
    """200 while the rollup database answers; a cache outage is "degraded", never not-ready."""
    database = await run_db(lambda: database_check(request))
    checks: dict[str, dict[str, str]] = {"database": database}
    cache = request.app.get(CACHE)
    if cache is not None:
        checks["cache"] = await cache.check()
    ready = database["status"] == "ok"
    status = "ready" if ready else "unavailable"
    if ready and checks.get("cache", {}).get("status") == "degraded":
        status = "degraded"
    return web.json_response(
        {"status": status, "checks": checks},
        status=200 if ready else 503,
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
