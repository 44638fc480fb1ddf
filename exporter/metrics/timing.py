"""HTTP request timing for dashboard_metrics_http_request_duration_seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from dashboard_metrics.exporter.stats import STATS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Anything else is "other": a client must not be able to mint label values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(request: web.Request) -> str:
    """The matched route's canonical path (``/api/v1/unstract/{org_id}/...``), never the raw
    path, so label values stay bounded."""
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


@web.middleware
async def http_timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    began = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 0  # the client went away: nothing was answered
        raise
    finally:
        if status:
            method = request.method if request.method in _METHODS else "other"
            seconds = time.perf_counter() - began
            request.config_dict[STATS].http_request(route_of(request), method, status, seconds)
