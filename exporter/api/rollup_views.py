"""summary/, series/, overview/ and the paginated list of hourly rows: the rollup tiers."""

from __future__ import annotations

import uuid
from datetime import tzinfo
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import func, select

from dashboard_metrics.core.schema import HOURLY
from dashboard_metrics.core.timeutil import hour_start
from dashboard_metrics.exporter.api import caching, names, shape
from dashboard_metrics.exporter.api.anyrange import ANY_RANGE, build_any
from dashboard_metrics.exporter.api.context import Api
from dashboard_metrics.exporter.api.errors import ApiError, invalid
from dashboard_metrics.exporter.api.params import (
    GRANULARITIES,
    SOURCES,
    DateRange,
    MetricFilter,
    parse_bool,
    parse_choice,
    parse_filter,
    parse_int,
    parse_range,
    parse_selection,
)
from dashboard_metrics.exporter.api.plan import ReadPlan
from dashboard_metrics.exporter.api.rollups import Cell, filters, read_live, read_plan
from dashboard_metrics.exporter.dbcall import run_db

ROW_NAMESPACE = uuid.UUID("5d0c3f8e-8a34-4a53-9d0b-2f1a3f6f6d10")


async def _cells(
    api: Api,
    org: str,
    flt: MetricFilter,
    plan: ReadPlan,
    refresh: bool,
    generation: int | None = None,
) -> list[Cell]:
    if plan.only_hours:
        if generation is None:
            generation = await api.generation()
        cells: list[Cell] = []
        for start, end in plan.hours:
            cells += await caching.hourly_cells(api, org, flt, start, end, refresh, generation)
        return cells

    def read() -> list[Cell]:
        with api.reader.connect() as conn:
            cells = read_plan(conn, org, flt, plan)
        if plan.live:
            with api.source.connect() as conn:
                cells += read_live(conn, org, flt, plan.live)
        return cells

    return await run_db(read)


async def _plan(
    api: Api, query: Any, default_days: int, granularity: str | None
) -> tuple[DateRange, ReadPlan]:
    now = api.clock()
    rng = parse_range(query, now, default_days)
    source = parse_choice(query, "source", SOURCES, "auto")
    return rng, await api.plan(rng, source, granularity, now)


async def _overview_plan(api: Api, query: Any) -> tuple[DateRange, ReadPlan]:
    """Any valid range (no 365-day cap, any age), as Unstract answers it: the tiers as for
    summary/ when they cover it, else `anyrange` (monthly for old months, the source where no
    tier holds a part)."""
    now = api.clock()
    rng = parse_range(query, now, 7, ANY_RANGE)
    try:
        return rng, await api.plan(rng, "auto", "day", now)
    except ApiError as exc:
        if exc.status != 400 or exc.attr != "start_date":
            raise
    return rng, build_any(rng, await api.coverage(now))


async def _shaped(request: web.Request, api: Api, org: str, endpoint: str) -> web.Response:
    """summary/ and series/. The body after start_date/end_date is kept in-process per
    (endpoint, organization, filter with its grouping and dimension filters, granularity, time
    zone, plan, generation); a hit formats only the echoed bounds. Byte for byte
    ``orjson.dumps`` of the whole dict.
    """
    query = request.query
    flt = parse_selection(query)
    refresh = parse_bool(query, "refresh")
    granularity = (
        parse_choice(query, "granularity", GRANULARITIES, "day") if endpoint == "series" else None
    )
    rng, plan = await _plan(api, query, 30, granularity)
    generation = await api.generation()
    key = (
        endpoint,
        org,
        flt,
        granularity,
        rng.tz,
        plan.source,
        tuple(plan.hours),
        tuple(plan.days),
        tuple(plan.months),
        tuple(plan.live),
    )
    head = f'{{"start_date":"{rng.start.isoformat()}","end_date":"{rng.end.isoformat()}",'
    tail = None if refresh else api.cache.body(generation, key)
    if tail is None:
        cells = await _cells(api, org, flt, plan, refresh, generation)
        labels = await names.labels_for(api, org, flt.breakdown, cells)
        tail = _tail(cells, plan.source, granularity, rng.tz, labels)
        current = rng.end_hour > hour_start(api.clock())
        settings = api.settings
        ttl = settings.cache_ttl_current_bucket if current else settings.cache_ttl_historical
        api.cache.keep_body(generation, key, ttl, tail)
    return web.Response(body=head.encode() + tail, content_type="application/json", charset="utf-8")


def _tail(
    cells: list[Cell],
    source: str,
    granularity: str | None,
    tz: tzinfo,
    labels: shape.Labels | None,
) -> bytes:
    """The body after start_date/end_date, without its "{"."""
    if granularity is None:
        rest = {"source": source, "summary": shape.summary(cells, source, tz, labels)}
        return orjson.dumps(rest)[1:]
    series_body = shape.series_json(cells, granularity, tz, labels)
    return (
        f'"granularity":"{granularity}","source":"{source}","series":'.encode() + series_body + b"}"
    )


async def summary(request: web.Request, api: Api, org: str) -> web.Response:
    return await _shaped(request, api, org, "summary")


async def series(request: web.Request, api: Api, org: str) -> web.Response:
    return await _shaped(request, api, org, "series")


async def overview(request: web.Request, api: Api, org: str) -> web.Response:
    async def compute() -> dict[str, Any]:
        rng, plan = await _overview_plan(api, request.query)
        flt = MetricFilter(None, None, None)
        cells = await _cells(api, org, flt, plan, refresh=True)
        totals, trend = shape.overview(cells, rng.tz)
        return {
            "period": {
                "start_date": rng.start.isoformat(),
                "end_date": rng.end.isoformat(),
                "days": rng.days,
            },
            "totals": totals,
            "daily_trend": trend,
        }

    return await caching.cached_response(request, api, org, "overview", compute)


ORDERINGS = (
    "timestamp",
    "-timestamp",
    "metric_name",
    "-metric_name",
    "metric_value",
    "-metric_value",
)


def row_id(org: str, *key: Any) -> str:
    """A stable id for a row with a natural key (the rollups have no surrogate key)."""
    return str(uuid.uuid5(ROW_NAMESPACE, "\x1f".join(str(part) for part in (org, *key))))


async def rows(request: web.Request, api: Api, org: str) -> web.Response:
    """The organization's hourly rows, DRF-style pages (Unstract's module returns all of them)."""
    query = request.query
    flt = parse_filter(query)
    page = parse_int(query, "page", 1, 1, 10**9)
    size = parse_int(query, "page_size", 100, 1, 1000)
    ordering = parse_choice(query, "ordering", ORDERINGS, "-timestamp")
    table = HOURLY.table
    where = filters(table, org, flt)
    sort_column = table.c[ordering.lstrip("-")]
    primary = sort_column.desc() if ordering.startswith("-") else sort_column.asc()
    order = [primary, table.c.timestamp.desc(), table.c.metric_name, table.c.project, table.c.tag]

    def read() -> tuple[int, list[Any]]:
        with api.reader.connect() as conn:
            count = conn.execute(select(func.count()).select_from(table).where(*where)).scalar()
            result = conn.execute(
                select(table).where(*where).order_by(*order).offset((page - 1) * size).limit(size)
            )
            return int(count or 0), list(result)

    count, found = await run_db(read)
    if page > 1 and (page - 1) * size >= count:
        raise invalid("page", "Invalid page.")

    def link(number: int) -> str:
        # Relative to this server: never built from the request's Host header.
        return str(request.rel_url.update_query(page=str(number), page_size=str(size)))

    return web.json_response(
        {
            "count": count,
            "next": link(page + 1) if page * size < count else None,
            "previous": link(page - 1) if page > 1 else None,
            "results": [
                {
                    "id": row_id(org, r.timestamp.isoformat(), r.metric_name, r.project, r.tag),
                    "timestamp": r.timestamp.isoformat(),
                    "metric_name": r.metric_name,
                    "metric_type": r.metric_type,
                    "metric_value": r.metric_value,
                    "metric_count": r.metric_count,
                    "project": r.project,
                    "tag": r.tag,
                    "created_at": r.created_at.isoformat(),
                }
                for r in found
            ],
        }
    )
