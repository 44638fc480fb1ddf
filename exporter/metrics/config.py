"""/metrics settings resolved once per app: namespace, organization controls, dimension labels
and their series cap, auth."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from importlib import metadata

from dashboard_metrics.core.catalogue import Dimension
from dashboard_metrics.core.setting_types import parse_metrics_auth
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.secrets import header_bytes


@dataclass(frozen=True)
class Credentials:
    scheme: str  # "Bearer" or "Basic"
    secret: bytes  # the bearer token, or "user:password"

    def accepts(self, authorization: str) -> bool:
        """Constant-time check of an Authorization header value."""
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != self.scheme.lower():
            given = ""
        presented = header_bytes(given.strip())
        if self.scheme == "Basic":
            try:
                presented = base64.b64decode(presented, validate=True)
            except (binascii.Error, ValueError):
                presented = b""
        return hmac.compare_digest(presented, self.secret)

    @property
    def challenge(self) -> str:
        return f'{self.scheme} realm="metrics"'


def parse_auth(raw: str) -> Credentials | None:
    """DASHBOARD_METRICS_METRICS_AUTH as credentials (its syntax is checked with the settings)."""
    parsed = parse_metrics_auth(raw)
    return None if parsed is None else Credentials(parsed[0], parsed[1].encode())


def build_version() -> str:
    try:
        return metadata.version("dashboard-metrics")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class MetricsConfig:
    namespace: str
    allowlist: frozenset[str] | None
    top_n: int
    auth: Credentials | None
    version: str
    # The labels the usage families may carry beyond organization (catalogue order).
    dimensions: tuple[Dimension, ...] = ()
    max_series: int = 10000

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsConfig:
        allow = frozenset(o.strip() for o in settings.metrics_org_allowlist.split(",") if o.strip())
        return cls(
            namespace=settings.namespace,
            allowlist=allow or None,
            top_n=settings.metrics_top_n,
            auth=parse_auth(settings.metrics_auth.get_secret_value()),
            version=build_version(),
            dimensions=tuple(Dimension(d) for d in settings.metrics_dimensions.split(",") if d),
            max_series=settings.metrics_max_series,
        )
