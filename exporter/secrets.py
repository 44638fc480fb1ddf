"""The service's secrets: comparing presented credentials as bytes, and listing the configured
ones so the logs can scrub them."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dashboard_metrics.core.settings import Settings


def header_bytes(value: str) -> bytes:
    """A header value as bytes, whatever aiohttp decoded: undecodable bytes arrive as lone
    surrogates, which a plain ``encode()`` rejects (a 500). ``surrogatepass`` never fails, and
    its output is invalid UTF-8, so it can never equal a configured key."""
    return value.encode("utf-8", "surrogatepass")


def _password(url: str) -> str | None:
    if not url:
        return None
    try:
        return make_url(url).password
    except ArgumentError:
        return None


def configured(settings: Settings) -> list[str]:
    """Every secret in ``settings``: API keys, the /metrics credentials, URL passwords."""
    found = [entry.partition("=")[0].strip() for entry in settings.api_keys.split(";")]
    kind, _, rest = settings.metrics_auth.partition(":")
    if kind == "bearer":
        found.append(rest)
    elif kind == "basic":
        found += [rest, rest.partition(":")[2]]
    found += [
        _password(url) or ""
        for url in (settings.database_url, settings.source_database_url, settings.redis_url)
    ]
    return [secret for secret in found if secret]
