"""POST /api/v1/unstract/{org_id}/events/: authorize, bound and parse the body, validate each
event, store the valid ones (committed), answer the counts.

Errors are the API's JSON errors: 400 (malformed body, a parameter), 401/403 (keys), 413 (over
5 MB or 10,000 events), 503 (database unavailable, answered by the app's middleware).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy.engine import Engine

from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.api.errors import ApiError, invalid
from dashboard_metrics.exporter.api.params import check_name, check_query, check_text
from dashboard_metrics.exporter.dbcall import run_db
from dashboard_metrics.exporter.ingest.auth import INGEST_AUTH, IngestAuth
from dashboard_metrics.exporter.ingest.events import MAX_EVENTS
from dashboard_metrics.exporter.ingest.store import ingest as ingest_events
from dashboard_metrics.exporter.keys import CLOCK, SETTINGS

PATH = "/api/v1/unstract/{org_id}/events/"
MAX_BODY_BYTES = 5 * 1024 * 1024
_CHUNK = 256 * 1024

# The rollup database, written: the app factory creates (and disposes) it apart from the
# engine the read API uses.
INGEST_ENGINE = web.AppKey("ingest_engine", Engine)


def _too_large(detail: str) -> ApiError:
    return ApiError(413, "request_too_large", detail)


async def read_body(request: web.Request) -> bytes:
    """The body, refused past MAX_BODY_BYTES: by its declared length before a byte is read,
    and by the bytes actually read (a chunked body declares none)."""
    too_large = _too_large(f"The body is over 5 MB ({MAX_BODY_BYTES} bytes).")
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_CHUNK):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_events(body: bytes) -> list[Any]:
    """``{"events": [...]}``, or a 400 naming what is wrong (a 413 past MAX_EVENTS)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid("body", f"Malformed JSON: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(payload, dict):
        raise invalid("body", 'The body must be a JSON object: {"events": [...]}.')
    for name in payload:
        if name != "events":
            raise invalid(check_name(name), 'Unknown field; the body is {"events": [...]}.')
    events = payload.get("events")
    if not isinstance(events, list):
        raise invalid("events", "Required: a list of events.")
    if len(events) > MAX_EVENTS:
        raise _too_large(f"At most {MAX_EVENTS} events per request; send more requests.")
    return events


def answer(accepted: int, duplicates: int, rejected: list[dict[str, Any]]) -> web.Response:
    body = orjson.dumps({"accepted": accepted, "duplicates": duplicates, "rejected": rejected})
    return web.Response(body=body, content_type="application/json", charset="utf-8")


async def ingest(request: web.Request, org: str) -> web.Response:
    """The endpoint's work once the request is authorized."""
    body = await read_body(request)
    app = request.app
    now = app[CLOCK]()
    engine, settings = app[INGEST_ENGINE], app[SETTINGS]
    # Parsing and validation run in the thread too (up to 5 MB, 10,000 events): the event
    # loop keeps answering other requests meanwhile.
    outcome = await run_db(lambda: ingest_events(engine, settings, org, parse_events(body), now))
    return answer(outcome.accepted, outcome.duplicates, outcome.rejected)


async def handle(request: web.Request) -> web.StreamResponse:
    org = request.match_info["org_id"]
    try:
        request.app[INGEST_AUTH].check(request, org)
        check_text(org, "org_id")
        check_query(request.query, frozenset())
        return await ingest(request, org)
    except ApiError as exc:
        return exc.response()


def setup(app: web.Application, settings: Settings, engine: Engine, owned: bool) -> None:
    """Mount the endpoint; ``owned``: the app disposes ``engine`` when it stops."""
    app[INGEST_AUTH] = IngestAuth(settings.ingest_keys.get_secret_value())
    app[INGEST_ENGINE] = engine

    async def dispose(_app: web.Application) -> AsyncIterator[None]:
        yield
        if owned:
            engine.dispose()

    app.cleanup_ctx.append(dispose)
    app.router.add_post(PATH, handle)
