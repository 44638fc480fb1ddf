"""Liveness and readiness: anonymous, cheap, never a traceback, states only.

Anonymous callers learn ok / degraded / down; why a check failed (hosts, ports, driver
messages) goes to the log, once per change of state, not into the response.
"""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dashboard_metrics.core.db import first_line
from dashboard_metrics.exporter.cache import RESPONSE_CACHE
from dashboard_metrics.exporter.dbcall import run_db
from dashboard_metrics.exporter.keys import ROLLUP
from dashboard_metrics.exporter.schema_state import readable, schema_state

log = logging.getLogger("dashboard_metrics.http")

OK, DEGRADED, DOWN, DISABLED = "ok", "degraded", "down", "disabled"


class Reporter:
    """Logs a check's failure when its state changes (probes come every few seconds)."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def __call__(self, check: str, status: str, why: str = "") -> str:
        if self._last.get(check, OK) != status:
            level = logging.INFO if status == OK else logging.WARNING
            log.log(level, f"{check} check: {status}", extra={"fields": {"reason": why}})
        self._last[check] = status
        return status


REPORTER = web.AppKey("health_reporter", Reporter)


def rollup_status(engine: Engine) -> tuple[str, str]:
    """(state, reason): the rollup schema must be readable, not merely the server up."""
    try:
        state = schema_state(engine)
    except SQLAlchemyError as exc:
        return DOWN, first_line(exc)
    if not readable(state):
        return DOWN, f"rollup schema {state.value}: run `dashboard-metrics migrate`"
    return OK, ""


async def cache_status(app: web.Application) -> str | None:
    cache = app.get(RESPONSE_CACHE)
    if cache is None:
        return None
    result = await cache.check()
    return app[REPORTER]("cache", result["status"], result.get("message", ""))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 while the rollup schema is readable; a cache outage is "degraded", never not-ready."""
    app = request.app
    database, why = await run_db(lambda: rollup_status(app[ROLLUP]))
    checks = {"database": {"status": app[REPORTER]("database", database, why)}}
    cache = await cache_status(app)
    if cache is not None:
        checks["cache"] = {"status": cache}
    ready = database == OK
    status = "ready" if ready else "unavailable"
    if ready and cache == DEGRADED:
        status = "degraded"
    return web.json_response({"status": status, "checks": checks}, status=200 if ready else 503)


def setup(app: web.Application) -> None:
    app[REPORTER] = Reporter()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
