"""health/: the anchor's per-organization probe. A cache outage is reported as degraded and
does not make the service unhealthy (requests are then served from the database)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import exists, select
from sqlalchemy.exc import SQLAlchemyError

from aggregator.db import first_line
from aggregator.rollup_tables import HOURLY
from exporter.api.context import Api
from exporter.dbcall import run_db


def _database(api: Api, org: str) -> dict[str, str]:
    try:
        with api.rollup.connect() as conn:
            table = HOURLY.table
            conn.execute(select(exists().where(table.c.organization_id == org))).scalar()
        return {"status": "ok"}
    except SQLAlchemyError as exc:
        return {"status": "error", "message": first_line(exc)}


async def health(request: web.Request, api: Api, org: str) -> web.Response:
    database = await run_db(lambda: _database(api, org))
    cache = await api.cache.check()
    cache_check = {"status": cache["status"]}
    if "message" in cache:
        cache_check["message"] = cache["message"]
    healthy = database["status"] == "ok"
    return web.json_response(
        {
            "healthy": healthy,
            "checks": {"database": database, "cache": cache_check},
            "timestamp": api.clock().isoformat(),
        },
        status=200 if healthy else 503,
    )
