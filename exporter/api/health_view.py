"""health/: Unstract's per-organization probe. A cache outage is reported as degraded and
does not make the service unhealthy (requests are then served from the database). States only:
the reasons go to the log (see `exporter.health`)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import exists, select

from dashboard_metrics.core.db import probe
from dashboard_metrics.core.schema import HOURLY
from dashboard_metrics.exporter.api.context import Api
from dashboard_metrics.exporter.dbcall import run_db
from dashboard_metrics.exporter.health import DOWN, OK, REPORTER, cache_status


def _database(api: Api, org: str) -> tuple[str, str]:
    table = HOURLY.table
    why = probe(api.rollup, select(exists().where(table.c.organization_id == org)))
    return (OK, "") if why is None else (DOWN, why)


async def health(request: web.Request, api: Api, org: str) -> web.Response:
    database, why = await run_db(lambda: _database(api, org))
    status = request.app[REPORTER]("database", database, why)
    cache = await cache_status(request.app)
    healthy = database == OK
    return web.json_response(
        {
            "healthy": healthy,
            "checks": {"database": {"status": status}, "cache": {"status": cache or "disabled"}},
            "timestamp": api.clock().isoformat(),
        },
        status=200 if healthy else 503,
    )
