"""GET /metrics: auth, one bounded database read, content negotiation and gzip."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dashboard_metrics.core import runstats, state
from dashboard_metrics.core.db import first_line
from dashboard_metrics.core.schema import TOTALS_VERSION
from dashboard_metrics.exporter.api.errors import error_response
from dashboard_metrics.exporter.dbcall import run_db
from dashboard_metrics.exporter.keys import CLOCK, ROLLUP, SETTINGS, SOURCE
from dashboard_metrics.exporter.metrics import runtime, service
from dashboard_metrics.exporter.metrics.config import MetricsConfig
from dashboard_metrics.exporter.metrics.usage import Built, FamiliesCollector, UsageCache
from dashboard_metrics.exporter.stats import STATS

log = logging.getLogger("dashboard_metrics.metrics")

CONFIG = web.AppKey("metrics_config", MetricsConfig)
USAGE_CACHE = web.AppKey("metrics_usage_cache", UsageCache)
RENDERER = web.AppKey("metrics_renderer", ThreadPoolExecutor)
RUNTIME = web.AppKey("metrics_runtime", CollectorRegistry)

STATE_KEYS = (
    state.LAST_TICK,
    state.TICKS_TOTAL,
    state.TICK_FAILURES_TOTAL,
    runstats.RUNSTATS,
    TOTALS_VERSION,
)
# Bound on the database part of a scrape when Prometheus does not say its timeout.
DEFAULT_DB_TIMEOUT = 10.0
PREWARM_SECONDS = 1.0  # how soon after a tick a replica renders the new totals
MAX_STUCK_READS = 2  # abandoned reads tolerated before scrapes stop trying (see DbGate)
GZIP_LEVEL = 1  # most of gzip's size win at a fraction of level 9's time


@dataclass(frozen=True)
class Snapshot:
    """What one scrape read from the rollup database (nothing when it was unreachable)."""

    up: bool
    state: dict[str, Any] = field(default_factory=dict)
    usage: Built | None = None


def read_snapshot(
    engine: Engine, config: MetricsConfig, cache: UsageCache, source: Engine | None = None
) -> Snapshot:
    with engine.connect() as conn:
        # State first: a totals version read before the totals can only be older than them,
        # so the cache at worst rebuilds once more, never keeps stale families.
        values = state.get_all(conn, STATE_KEYS)
        usage = cache.get(conn, int(values.get(TOTALS_VERSION) or 0), config, source)
    return Snapshot(True, values, usage)


def db_timeout(request: web.Request) -> float:
    raw = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
    try:
        # Leave Prometheus time to receive the (database-down) answer.
        return max(0.5, min(DEFAULT_DB_TIMEOUT, float(raw) - 0.5)) if raw else DEFAULT_DB_TIMEOUT
    except ValueError:
        return DEFAULT_DB_TIMEOUT


class DbGate:
    """Bounds the database reads /metrics abandons: a read that timed out keeps its thread until
    the driver gives up (a black-holed database can hold it for minutes), so while
    MAX_STUCK_READS of them are still running, scrapes report the database down at once."""

    def __init__(self) -> None:
        self.stuck = 0  # touched only on the event loop

    async def read(self, app: web.Application, timeout: float) -> Snapshot:
        if self.stuck >= MAX_STUCK_READS:
            raise TimeoutError
        engine, config, cache = app[ROLLUP], app[CONFIG], app[USAGE_CACHE]
        # The source only for the names of the info families, once per totals version.
        source = app[SOURCE] if config.dimensions else None
        future = asyncio.ensure_future(run_db(lambda: read_snapshot(engine, config, cache, source)))
        future.add_done_callback(_retrieve)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self.stuck += 1
            future.add_done_callback(self._release)
            raise

    def _release(self, _future: asyncio.Future[Snapshot]) -> None:
        self.stuck -= 1


def _retrieve(future: asyncio.Future[Snapshot]) -> None:
    if not future.cancelled():
        future.exception()  # an abandoned read's failure is expected, not "never retrieved"


GATE = web.AppKey("metrics_db_gate", DbGate)


async def snapshot(request: web.Request) -> Snapshot:
    try:
        return await request.app[GATE].read(request.app, db_timeout(request))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("metrics: rollup database unavailable", extra={"fields": {"error": _why(exc)}})
        return Snapshot(False)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return first_line(exc)


def render(
    cache: UsageCache, usage: Built | None, families: list[Metric], accept: str, gzip_ok: bool
) -> tuple[bytes, str, bool]:
    encoder, content_type = choose_encoder(accept)
    body = encoder(FamiliesCollector(families))
    if usage is not None:
        body = cache.render(usage, encoder, content_type) + body
    if gzip_ok:
        return gzip.compress(body, compresslevel=GZIP_LEVEL), content_type, True
    return body, content_type, False


def negotiable(accept: str) -> str:
    """``accept``, or "" (the classic text format) when prometheus_client cannot parse it: a
    non-numeric ``version=`` raises TypeError inside choose_encoder (a 500 otherwise)."""
    try:
        choose_encoder(accept)
    except Exception:
        return ""
    return accept


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG]
    if config.auth is not None and not config.auth.accepts(
        request.headers.get(hdrs.AUTHORIZATION, "")
    ):
        return error_response(
            401,
            "not_authenticated",
            "Valid /metrics credentials are required.",
            headers={hdrs.WWW_AUTHENTICATE: config.auth.challenge},
        )
    snap = await snapshot(request)
    cache_counts, http = app[STATS].snapshot()
    inputs = service.ServiceInputs(
        database_up=snap.up,
        state=snap.state,
        cache=cache_counts,
        http=http,
        now=app[CLOCK](),
        version=config.version,
    )
    families = service.families(inputs) + runtime.families(app[RUNTIME])
    accept = negotiable(",".join(request.headers.getall(hdrs.ACCEPT, [])))
    gzip_ok = gzip_accepted(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    # Rendering tens of thousands of samples is CPU work: keep the event loop free, in a pool
    # of its own that database threads stuck on an unreachable server cannot exhaust.
    body, content_type, gzipped = await asyncio.get_running_loop().run_in_executor(
        app[RENDERER], render, app[USAGE_CACHE], snap.usage, families, accept, gzip_ok
    )
    response = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
    response.headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
    if gzipped:
        response.headers[hdrs.CONTENT_ENCODING] = "gzip"
    return response


async def prewarm_once(app: web.Application) -> None:
    """Build and render a new totals version ahead of the next scrape, in the formats this
    replica has been asked for, so scrapes after a tick stay as cheap as the ones before.

    Only new immutable families are built and swapped in; nothing a scrape holds is mutated.
    """
    cache = app[USAGE_CACHE]
    if not cache.formats:
        return  # nobody scrapes this replica
    try:
        snap = await app[GATE].read(app, DEFAULT_DB_TIMEOUT)
    except (SQLAlchemyError, OSError, TimeoutError):
        return  # the next scrape reports the outage
    loop = asyncio.get_running_loop()
    for content_type, encoder in list(cache.formats.items()):
        if snap.usage is not None:
            await loop.run_in_executor(
                app[RENDERER], cache.render, snap.usage, encoder, content_type
            )


async def prewarm(app: web.Application) -> None:
    while True:
        await asyncio.sleep(PREWARM_SECONDS)
        await prewarm_once(app)


async def prewarming(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(prewarm(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    app[RENDERER].shutdown(wait=False)


def setup(app: web.Application) -> None:
    app[CONFIG] = MetricsConfig.from_settings(app[SETTINGS])
    app[USAGE_CACHE] = UsageCache()
    app[GATE] = DbGate()
    app[RENDERER] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="metrics-render")
    app[RUNTIME] = runtime.registry()
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(prewarming)
