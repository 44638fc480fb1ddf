"""Bearer API keys: DASHBOARD_METRICS_API_KEYS="key1=org_a,org_b;key2=*".

Each `;`-separated entry maps one key to a comma-separated list of organization string ids, or to
`*` (every organization). Keys are compared in constant time (SHA-256 digests, hmac.compare_digest
against every configured key) and never logged. No keys configured: the API is open (`serve`
then refuses non-loopback binds unless explicitly allowed).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web

from dashboard_metrics.core.setting_types import parse_api_keys
from dashboard_metrics.exporter.api.errors import ApiError
from dashboard_metrics.exporter.secrets import header_bytes

ALL = "*"


@dataclass(frozen=True)
class Grant:
    digest: bytes
    orgs: frozenset[str]  # contains ALL for every organization


def _digest(key: str) -> bytes:
    return hashlib.sha256(header_bytes(key)).digest()


def parse_keys(spec: str) -> list[Grant]:
    """The grants of DASHBOARD_METRICS_API_KEYS (its syntax is checked with the settings)."""
    return [Grant(_digest(key), orgs) for key, orgs in parse_api_keys(spec)]


class Authenticator:
    def __init__(self, grants: list[Grant]) -> None:
        self.grants = grants

    @property
    def open(self) -> bool:
        return not self.grants

    def check(self, request: web.Request, org_id: str) -> None:
        """Raise 401 without a valid key, 403 when the key does not cover ``org_id``."""
        if self.open:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401, "not_authenticated", "Authentication credentials were not provided."
            )
        digest = _digest(token.strip())
        match: Grant | None = None
        for grant in self.grants:  # no early exit: timing does not depend on which key matched
            if hmac.compare_digest(grant.digest, digest):
                match = grant
        if match is None:
            raise ApiError(401, "authentication_failed", "Invalid API key.")
        if ALL not in match.orgs and org_id not in match.orgs:
            raise ApiError(
                403, "permission_denied", "This API key may not read this organization's data."
            )


AUTH = web.AppKey("auth", Authenticator)
