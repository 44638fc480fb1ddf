"""The JSON API's routes under /api/v1/unstract/{org_id}/metrics/ (see `setup`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from dashboard_metrics.exporter import openapi
from dashboard_metrics.exporter.api import (
    activity,
    forward_auth,
    health_view,
    live_views,
    rollup_views,
)
from dashboard_metrics.exporter.api.context import API, Api
from dashboard_metrics.exporter.api.errors import ApiError
from dashboard_metrics.exporter.api.forward_auth import FORWARD_AUTH
from dashboard_metrics.exporter.api.params import check_query, check_text
from dashboard_metrics.exporter.auth import AUTH, Authenticator, parse_keys
from dashboard_metrics.exporter.cache import RESPONSE_CACHE, ResilientCache, make_backend
from dashboard_metrics.exporter.keys import CLOCK, ROLLUP, SETTINGS, SOURCE
from dashboard_metrics.exporter.stats import STATS

ROUTE_PREFIX = "/api/v1/unstract/{org_id}/metrics/"

View = Callable[[web.Request, Api, str], Awaitable[web.StreamResponse]]

ROUTES: dict[str, View] = {
    "": rollup_views.rows,
    "summary/": rollup_views.summary,
    "series/": rollup_views.series,
    "overview/": rollup_views.overview,
    "live-summary/": live_views.live_summary,
    "live-series/": live_views.live_series,
    "recent-activity/": activity.recent_activity,
    "workflow-token-usage/": activity.workflow_token_usage,
    "health/": health_view.health,
}


def _handler(
    view: View, allowed: frozenset[str]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        api = request.app[API]
        org = request.match_info["org_id"]
        try:
            await forward_auth.authorize(api.auth, request.app.get(FORWARD_AUTH), request, org)
            check_text(org, "org_id")
            check_query(request.query, allowed)
            return await view(request, api, org)
        except ApiError as exc:
            return exc.response()

    return handle


def setup(app: web.Application) -> None:
    settings = app[SETTINGS]
    auth = Authenticator(parse_keys(settings.api_keys.get_secret_value()))
    cache = ResilientCache(
        make_backend(settings.redis_url.get_secret_value(), settings.cache_max_bytes),
        app[STATS],
        enabled=settings.cache_enabled,
        max_bytes=settings.cache_max_bytes,
    )
    app[AUTH] = auth
    app[RESPONSE_CACHE] = cache
    app[API] = Api(settings, app[CLOCK], app[ROLLUP], app[SOURCE], cache, auth)
    forward_auth.setup(app, settings)

    async def close_cache(_app: web.Application) -> AsyncIterator[None]:
        yield
        await cache.close()

    app.cleanup_ctx.append(close_cache)
    parameters = openapi.parameter_names()  # the document declares what each endpoint takes
    for path, view in ROUTES.items():
        app.router.add_get(ROUTE_PREFIX + path, _handler(view, parameters[path]))
    openapi.setup(app)
