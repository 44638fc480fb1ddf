"""Who may push events: DASHBOARD_METRICS_INGEST_KEYS ("key1=org_a,org_b;key2=*").

- No or an unknown bearer key: 401. A read key (DASHBOARD_METRICS_API_KEYS) only: 403, it
  cannot write. An ingest key outside its organizations: 403.
- No ingest keys configured: pushing is open exactly when reading is (no API keys and no
  forward auth); otherwise every push is a 403 that names the setting to configure.

Keys are compared as SHA-256 digests in constant time against every configured key (read keys
included, so the time does not tell which kind matched) and never logged.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from dashboard_metrics.core.setting_types import parse_ingest_keys
from dashboard_metrics.exporter.api.errors import ApiError
from dashboard_metrics.exporter.api.forward_auth import FORWARD_AUTH
from dashboard_metrics.exporter.auth import ALL, AUTH, Grant
from dashboard_metrics.exporter.secrets import header_bytes

SETTING = "DASHBOARD_METRICS_INGEST_KEYS"


def _digest(key: str) -> bytes:
    return hashlib.sha256(header_bytes(key)).digest()


def _matching(grants: list[Grant], digest: bytes) -> Grant | None:
    match: Grant | None = None
    for grant in grants:  # no early exit: timing does not depend on which key matched
        if hmac.compare_digest(grant.digest, digest):
            match = grant
    return match


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "not_authenticated", "Authentication credentials were not provided.")
    return token.strip()


def reading_is_open(app: web.Application) -> bool:
    """The read API's own rule (`forward_auth.authorize`): no keys and no gate."""
    return app[AUTH].open and app.get(FORWARD_AUTH) is None


class IngestAuth:
    def __init__(self, spec: str) -> None:
        self.grants = [Grant(_digest(key), orgs) for key, orgs in parse_ingest_keys(spec)]

    def check(self, request: web.Request, org_id: str) -> None:
        """Return when the request may push events to ``org_id``; else raise 401/403."""
        if not self.grants:
            if reading_is_open(request.app):
                return
            raise ApiError(
                403,
                "permission_denied",
                f"Pushing events needs a key: none is configured ({SETTING}).",
            )
        digest = _digest(_bearer(request))
        match = _matching(self.grants, digest)
        read_match = _matching(request.app[AUTH].grants, digest)
        if match is None and read_match is not None:
            raise ApiError(
                403, "permission_denied", f"A read key cannot push events; use a key of {SETTING}."
            )
        if match is None:
            raise ApiError(401, "authentication_failed", "Invalid API key.")
        if ALL not in match.orgs and org_id not in match.orgs:
            raise ApiError(
                403, "permission_denied", "This key may not push events to this organization."
            )


INGEST_AUTH = web.AppKey("ingest_auth", IngestAuth)
