"""Three cache layers, keyed by the aggregator generation so no tick is outlived: Unstract's
two below, and in front of them the final bodies of summary/ and series/ in process
(`BodyCache` in exporter/cache.py).

- Hour buckets (summary/ and series/ on the hourly tier): one MGET for every hour of the range,
  one database query for the missing ones, one pipelined SETEX; the hour holding "now" (and
  later ones) gets the short TTL, history the long one. Hour buckets are absolute UTC hours, so
  the time zone is not part of their keys; organization, metric, project and tag are, and a
  breakdown's grouping and dimension filters.
- Whole responses (overview/, live-*, recent-activity/, workflow-token-usage/): the key hashes
  the organization and every query parameter except `refresh`.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from dashboard_metrics.core.timeutil import HOUR, hour_start, hours_between
from dashboard_metrics.exporter.api.context import Api
from dashboard_metrics.exporter.api.params import MetricFilter, parse_bool
from dashboard_metrics.exporter.api.rollups import Cell, read_hours
from dashboard_metrics.exporter.dbcall import run_db

KEY_PREFIX = "dm:v1"
# Unstract's whole-response TTLs (seconds).
RESPONSE_TTL = {
    "overview": 300,
    "live_summary": 900,
    "live_series": 900,
    "recent_activity": 300,
    "workflow_token_usage": 3600,
}


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _bucket_keys(generation: int, org: str, hours: list[datetime], flt: MetricFilter) -> list[str]:
    parts: list[Any] = [org, *flt.parts()]
    if flt.breakdown.active:
        parts += flt.breakdown.key_parts()
    tail = json.dumps(parts, separators=(",", ":"))
    return [f"{KEY_PREFIX}:{generation}:hour:{hour.isoformat()[:13]}:{tail}" for hour in hours]


async def hourly_cells(
    api: Api,
    org: str,
    flt: MetricFilter,
    start: datetime,
    end: datetime,
    refresh: bool,
    generation: int,
) -> list[Cell]:
    hours = list(hours_between(start, end))
    if not hours:
        return []
    keys = _bucket_keys(generation, org, hours, flt)
    cached = [None] * len(keys) if refresh else await api.cache.mget(keys)
    grouped = bool(flt.breakdown.group_by)
    cells: list[Cell] = []
    missing: list[int] = []
    for index, raw in enumerate(cached):
        if raw is None:
            missing.append(index)
            continue
        try:
            rows = json.loads(raw)
        except ValueError:
            missing.append(index)
            continue
        if grouped:  # a row: the six fields, then the group's values
            cells.extend(_grouped(hours[index], row) for row in rows)
        else:
            cells.extend(Cell(hours[index], "hourly", *row) for row in rows)
    if not missing:
        return cells
    low, high = hours[missing[0]], hours[missing[-1]] + HOUR
    fresh = await run_db(lambda: _read(api, org, flt, low, high))
    by_hour: dict[datetime, list[Cell]] = defaultdict(list)
    for cell in fresh:
        by_hour[cell.start].append(cell)
    current = hour_start(api.clock())
    short, long = api.settings.cache_ttl_current_bucket, api.settings.cache_ttl_historical
    writes = []
    for index in missing:
        hour = hours[index]
        rows = by_hour.get(hour, [])
        cells.extend(rows)
        payload = _encode([[*cell[2:8], *cell.group] for cell in rows])
        writes.append((keys[index], short if hour >= current else long, payload))
    await api.cache.setex_many(writes)
    return cells


def _grouped(hour: datetime, row: list[Any]) -> Cell:
    name, kind, project, tag, value, events, *group = row
    return Cell(hour, "hourly", name, kind, project, tag, value, events, tuple(group))


def _read(api: Api, org: str, flt: MetricFilter, low: datetime, high: datetime) -> list[Cell]:
    with api.reader.connect() as conn:
        return read_hours(conn, org, flt, low, high)


async def cached_response(
    request: web.Request,
    api: Api,
    org: str,
    endpoint: str,
    compute: Callable[[], Awaitable[dict[str, Any]]],
) -> web.Response:
    """Serve a whole response from the cache, or compute it (a 200) and store it."""
    refresh = parse_bool(request.query, "refresh")
    params = sorted((k, v) for k, v in request.query.items() if k != "refresh")
    digest = hashlib.sha256(_encode([org, params])).hexdigest()[:32]
    key = f"{KEY_PREFIX}:{await api.generation()}:resp:{endpoint}:{digest}"
    if not refresh:
        hit = await api.cache.get(key)
        if hit is not None:
            return web.Response(body=hit, content_type="application/json")
    data = await compute()
    body = _encode(data)
    if "partial_errors" not in data:  # a degraded answer is not worth keeping
        await api.cache.setex_many([(key, RESPONSE_TTL[endpoint], body)])
    return web.Response(body=body, content_type="application/json")
