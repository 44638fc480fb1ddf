"""live-summary/ and live-series/: computed from the source tables, set-based (core.sourcesql
through rollups.live_cells), one query per source group under the source engine's statement
timeout.

Hours are computed in SQL and bucketed here, so the time zone rules match the rollup endpoints.
A group that fails (timeout, lock) marks its metrics unavailable instead of failing the request.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from dashboard_metrics.core.catalogue import METRICS, metric_groups, pushed_metrics
from dashboard_metrics.core.db import first_line
from dashboard_metrics.exporter.api import caching, names, shape
from dashboard_metrics.exporter.api.context import Api
from dashboard_metrics.exporter.api.dims import Breakdown
from dashboard_metrics.exporter.api.params import (
    GRANULARITIES,
    SOURCES,
    DateRange,
    parse_choice,
    parse_range,
    parse_selection,
)
from dashboard_metrics.exporter.api.rollups import Cell, live_cells, source_metrics
from dashboard_metrics.exporter.dbcall import run_db

log = logging.getLogger("dashboard_metrics.api")
LABEL_FIELDS = names.LABEL_FIELDS


def _compute(
    api: Api, org: str, rng: DateRange, metric_names: list[str], breakdown: Breakdown
) -> tuple[list[Cell], list[str]]:
    cells: list[Cell] = []
    failed: list[str] = []
    error: Exception | None = None
    ranges = [(rng.first_hour, rng.end_hour)] if rng.first_hour < rng.end_hour else []
    # One query per source group; the pushed metrics' from their partials in the rollup database.
    groups = [(api.source, [m.name for m in metrics]) for metrics in metric_groups().values()]
    groups.append((api.rollup, [m.name for m in pushed_metrics()]))
    for engine, group in groups:
        selected = [name for name in group if name in metric_names]
        if not selected or not ranges:
            continue
        try:
            with engine.connect() as conn:
                computed = live_cells(conn, org, selected, ranges, "live", breakdown)
        except (OperationalError, DBAPIError) as exc:
            if getattr(exc, "connection_invalidated", False):
                raise  # the database is down, not one slow query: 503
            log.warning(
                "live query failed",
                extra={"fields": {"metrics": selected, "error": first_line(exc)}},
            )
            failed += selected
            error = exc
            continue
        cells += computed
    if error is not None and not cells and len(failed) == len(metric_names):
        raise error  # nothing answered: the source database is unavailable (503)
    return cells, failed


async def _live(
    api: Api, org: str, request: web.Request
) -> tuple[DateRange, list[Cell], list[str], shape.Labels | None]:
    """The range, its cells, the metrics that failed and the groups' labels."""
    query = request.query
    rng = parse_range(query, api.clock(), 30)
    parse_choice(query, "source", SOURCES, "auto")  # accepted, as in Unstract's module; always live
    flt = parse_selection(query)
    metric_names = source_metrics(flt)
    cells, failed = await run_db(lambda: _compute(api, org, rng, metric_names, flt.breakdown))
    return rng, cells, failed, await names.labels_for(api, org, flt.breakdown, cells)


async def live_summary(request: web.Request, api: Api, org: str) -> web.Response:
    async def compute() -> dict[str, Any]:
        rng, cells, failed, labels = await _live(api, org, request)
        body: dict[str, Any] = {
            "start_date": rng.start.isoformat(),
            "end_date": rng.end.isoformat(),
            "source": "live",
            "summary": shape.summary(cells, "live", rng.tz, labels),
        }
        if failed:
            body["partial_errors"] = failed
        return body

    return await caching.cached_response(request, api, org, "live_summary", compute)


async def live_series(request: web.Request, api: Api, org: str) -> web.Response:
    async def compute() -> dict[str, Any]:
        granularity = parse_choice(request.query, "granularity", GRANULARITIES, "day")
        rng, cells, failed, labels = await _live(api, org, request)
        out = [
            {
                "metric_name": entry["metric_name"],
                "metric_type": entry["metric_type"],
                **{k: v for k, v in entry.items() if k in LABEL_FIELDS},
                "data": [{"timestamp": p["timestamp"], "value": p["value"]} for p in entry["data"]],
                "total_value": entry["total_value"],
            }
            for entry in shape.series(cells, granularity, rng.tz, labels)
        ]
        out += [
            {
                "metric_name": name,
                "metric_type": METRICS[name].type.value,
                "error": "unavailable",
                "data": [],
                "total_value": 0,
            }
            for name in failed
        ]
        body: dict[str, Any] = {
            "start_date": rng.start.isoformat(),
            "end_date": rng.end.isoformat(),
            "granularity": granularity,
            "source": "live",
            "series": out,
        }
        if failed:
            body["partial_errors"] = failed
        return body

    return await caching.cached_response(request, api, org, "live_series", compute)
