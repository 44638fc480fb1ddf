"""The aiohttp application factory that `serve` and `up` run."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from aggregator.db import first_line, rollup_engine, source_engine
from aggregator.settings import Settings
from aggregator.timeutil import Clock, utcnow
from exporter import api, health, index, metrics
from exporter.keys import CLOCK, ROLLUP, SETTINGS, SOURCE
from exporter.stats import STATS, ServiceStats

log = logging.getLogger("dashboard_metrics.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No traceback ever reaches a client: database outages are 503, bugs a bare 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except SQLAlchemyError as exc:
        log.error(
            "database unavailable",
            extra={"fields": {"path": request.path, "error": first_line(exc)}},
        )
        return web.json_response(
            {
                "type": "server_error",
                "errors": [
                    {
                        "code": "database_unavailable",
                        "detail": "The metrics database is unavailable; retry shortly.",
                        "attr": None,
                    }
                ],
            },
            status=503,
        )
    except Exception:
        log.exception("unhandled error", extra={"fields": {"path": request.path}})
        return web.json_response(
            {
                "type": "server_error",
                "errors": [{"code": "error", "detail": "Internal error.", "attr": None}],
            },
            status=500,
        )


def create_app(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    rollup: Engine | None = None,
    source: Engine | None = None,
) -> web.Application:
    app = web.Application(middlewares=[metrics.http_timing, errors_as_json])
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
    health.setup(app)
    index.setup(app)
    api.setup(app)
    metrics.setup(app)
    return app
