"""Forward authentication: Unstract's own login in front of the JSON API (issue 12).

With DASHBOARD_METRICS_FORWARD_AUTH_URL set (a URL template with ``{org_id}``), a request that
carries no valid bearer key is checked by a GET to that URL carrying only the request's
``Cookie`` and ``Authorization`` headers, the way nginx ``auth_request`` and Traefik
ForwardAuth work:

- 2xx allows the request;
- 401 and 403 are passed back as 401 and 403;
- anything else (a redirect, a 5xx, a refused connection) or no answer within
  DASHBOARD_METRICS_FORWARD_AUTH_TIMEOUT_SECONDS is a 503: the gate fails closed.

A positive answer is kept DASHBOARD_METRICS_FORWARD_AUTH_TTL_SECONDS (default 30; 0: never)
under a SHA-256 of the organization and the credentials; negative answers are never kept.
Credentials are never logged: a failed check is logged by its status or error kind only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import aiohttp
from aiohttp import web

from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.api.errors import ApiError
from dashboard_metrics.exporter.auth import Authenticator

log = logging.getLogger("dashboard_metrics.forward_auth")

FORWARDED = ("Cookie", "Authorization")
_UNDECODABLE = re.compile("[\ud800-\udfff]")  # how aiohttp hands over undecodable bytes
MAX_ENTRIES = 10_000  # remembered positive answers (oldest dropped first)


class ForwardAuth:
    def __init__(
        self,
        template: str,
        ttl_seconds: float,
        timeout_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.template = template
        self.ttl = ttl_seconds
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.monotonic = monotonic
        self._allowed: OrderedDict[bytes, float] = OrderedDict()  # key -> expiry
        self._session: aiohttp.ClientSession | None = None

    def url(self, org_id: str) -> str:
        return self.template.replace("{org_id}", quote(org_id, safe=""))

    @staticmethod
    def key(org_id: str, headers: dict[str, str]) -> bytes:
        material = json.dumps([org_id, *(headers.get(name) for name in FORWARDED)])
        return hashlib.sha256(material.encode("utf-8", "surrogateescape")).digest()

    def _remembered(self, key: bytes) -> bool:
        expiry = self._allowed.get(key)
        if expiry is None:
            return False
        if self.monotonic() < expiry:
            return True
        del self._allowed[key]
        return False

    def _remember(self, key: bytes) -> None:
        if self.ttl <= 0:
            return
        self._allowed[key] = self.monotonic() + self.ttl
        self._allowed.move_to_end(key)
        while len(self._allowed) > MAX_ENTRIES:
            self._allowed.popitem(last=False)

    async def check(self, request: web.Request, org_id: str) -> None:
        """Return when the gate allows ``request`` for ``org_id``; else raise 401/403/503."""
        headers = {
            name: ", ".join(request.headers.getall(name))
            for name in FORWARDED
            if name in request.headers
        }
        if any(_UNDECODABLE.search(value) for value in headers.values()):
            # Bytes that are not UTF-8 cannot be forwarded as sent: bad credentials (401), not
            # a gate outage (the client's encode error was a 503, logged as unreachable).
            raise ApiError(401, "authentication_failed", "Credentials are not valid UTF-8.")
        key = self.key(org_id, headers)
        if self._remembered(key):
            return
        status = await self._ask(org_id, headers)
        if 200 <= status < 300:
            self._remember(key)
            return
        if status == 401:
            raise ApiError(
                401, "not_authenticated", "Not signed in to Unstract, or the session ended."
            )
        if status == 403:
            raise ApiError(403, "permission_denied", "Not a member of this organization.")
        log.warning("forward auth gate refused the check", extra={"fields": {"status": status}})
        raise _unavailable()

    async def _ask(self, org_id: str, headers: dict[str, str]) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.get(
                self.url(org_id), headers=headers, allow_redirects=False
            ) as response:
                return response.status
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning(
                "forward auth gate unreachable", extra={"fields": {"error": type(exc).__name__}}
            )
            raise _unavailable() from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _unavailable() -> ApiError:
    return ApiError(503, "service_unavailable", "The sign-in check is unavailable; try again.")


async def authorize(
    auth: Authenticator, gate: ForwardAuth | None, request: web.Request, org_id: str
) -> None:
    """Bearer keys first (a valid key decides, 403 for another organization); without a valid
    key, the forward-auth gate when one is configured."""
    if gate is None:
        auth.check(request, org_id)
        return
    if not auth.open:
        try:
            auth.check(request, org_id)
            return
        except ApiError as exc:
            if exc.status == 403:  # a valid key never reads another organization
                raise
    await gate.check(request, org_id)


FORWARD_AUTH = web.AppKey("forward_auth", ForwardAuth)  # absent: no gate configured


def setup(app: web.Application, settings: Settings) -> ForwardAuth | None:
    gate = (
        ForwardAuth(
            settings.forward_auth_url.get_secret_value(),
            settings.forward_auth_ttl_seconds,
            settings.forward_auth_timeout_seconds,
        )
        if settings.forward_auth_url
        else None
    )
    if gate is not None:
        app[FORWARD_AUTH] = gate

    async def close(_app: web.Application) -> AsyncIterator[None]:
        yield
        if gate is not None:
            await gate.close()

    app.cleanup_ctx.append(close)
    return gate
