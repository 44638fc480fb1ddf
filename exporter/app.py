"""The aiohttp application factory that `serve` and `up` run."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import hdrs, web
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dashboard_metrics.core import logs
from dashboard_metrics.core.db import first_line, rollup_engine, source_engine
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import Clock, utcnow
from dashboard_metrics.exporter import health, index
from dashboard_metrics.exporter.api import routes as api_routes
from dashboard_metrics.exporter.api.errors import error_response
from dashboard_metrics.exporter.dbcall import run_db
from dashboard_metrics.exporter.ingest import view as ingest_view
from dashboard_metrics.exporter.ingest.store import ingest_engine
from dashboard_metrics.exporter.keys import CLOCK, ROLLUP, SETTINGS, SOURCE
from dashboard_metrics.exporter.metrics import handler as metrics_handler
from dashboard_metrics.exporter.metrics.timing import Handler, http_timing
from dashboard_metrics.exporter.schema_state import require_schema
from dashboard_metrics.exporter.server import SERVER_NAME
from dashboard_metrics.exporter.stats import STATS, ServiceStats

log = logging.getLogger("dashboard_metrics.http")


# Headers of an aiohttp HTTPException that describe its text/plain body, not the error.
_BODY_HEADERS = {hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH}


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is JSON and no traceback reaches a client: router errors (404, 405, ...)
    keep their status, database outages are 503, bugs a bare 500 (logged with traceback)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k not in _BODY_HEADERS}
        code = (exc.reason or "error").lower().replace(" ", "_")
        return error_response(exc.status, code, exc.reason or "Error.", headers=headers)
    except SQLAlchemyError as exc:
        log.error(
            "database unavailable",
            extra={"fields": {"path": request.path, "error": first_line(exc)}},
        )
        return error_response(
            503, "database_unavailable", "The metrics database is unavailable; retry shortly."
        )
    except Exception:
        log.exception("unhandled error", extra={"fields": {"path": request.path}})
        return error_response(500, "error", "Internal error.")


async def without_versions(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers[hdrs.SERVER] = SERVER_NAME


async def check_schema(app: web.Application) -> None:
    await run_db(lambda: require_schema(app[ROLLUP]))


def create_app(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    rollup: Engine | None = None,
    source: Engine | None = None,
    ingest: Engine | None = None,
) -> web.Application:
    """The service's app; engines given are the caller's to dispose (``ingest``: the engine
    pushed events are written with, by default one of its own)."""
    app = web.Application(middlewares=[http_timing, errors_as_json])
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[ROLLUP] = rollup or rollup_engine(settings, writer=False)
    app[SOURCE] = source or source_engine(settings, interactive=True)
    app[STATS] = ServiceStats()
    owned = [
        engine for engine, given in ((app[ROLLUP], rollup), (app[SOURCE], source)) if not given
    ]

    async def dispose_engines(_app: web.Application) -> AsyncIterator[None]:
        yield
        for engine in owned:
            engine.dispose()

    app.cleanup_ctx.append(dispose_engines)
    app.on_startup.append(check_schema)
    app.on_response_prepare.append(without_versions)
    logs.redact(settings.secrets())
    health.setup(app)
    index.setup(app)
    api_routes.setup(app)
    ingest_view.setup(app, settings, ingest or ingest_engine(settings), owned=ingest is None)
    metrics_handler.setup(app)
    return app
