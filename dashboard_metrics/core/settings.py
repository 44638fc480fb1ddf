"""Configuration: DASHBOARD_METRICS_* environment variables, with command-line flags on top.

The declarative part (names, types, defaults, validation) lives here, apart from the runtime
objects built from it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "DASHBOARD_METRICS_"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
DEFAULT_DATA_DIR = Path(".dashboard-metrics")


class ConfigError(ValueError):
    """A setting is invalid; the message names it."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""  # rollups; default: SQLite file under data_dir
    source_database_url: str = ""  # default: database_url
    source_schema: str = ""  # default: 'unstract' on PostgreSQL, none on SQLite
    rollup_schema: str = "dashboard_metrics"  # PostgreSQL: the schema of every table we own
    redis_url: str = ""  # unset: in-process cache
    api_keys: str = ""  # "key=org_a,org_b;key2=*"
    host: str = "127.0.0.1"
    port: int = 8080
    allow_unauthenticated: bool = False
    health_port: int = 0  # `aggregate`: serve /healthz and /readyz on this port (0: off)
    tick_seconds: float = 60.0
    change_overlap_seconds: float = 300.0
    reconcile_days: int = 7
    reconcile_at: str = "04:40"
    hourly_retention_days: int = 30
    daily_retention_days: int = 365
    hourly_cleanup_at: str = "02:00"
    daily_cleanup_at: str = "03:00"
    statement_timeout_seconds: float = 30.0
    log_level: str = "INFO"
    namespace: str = "unstract"
    metrics_org_allowlist: str = ""
    metrics_top_n: int = 0
    metrics_auth: str = ""  # "bearer:TOKEN" or "basic:user:password"
    cache_enabled: bool = True  # false: the JSON API reads the database on every request
    cache_ttl_current_bucket: int = 60  # seconds; the hour bucket holding "now" (and later ones)
    cache_ttl_historical: int = 28800  # seconds; older hour buckets
    cache_max_bytes: int = 64 * 1024 * 1024  # the API's in-process cache layers, in all
    http_header_timeout_seconds: float = 10.0  # a request's headers must arrive within this
    # Forward auth (Unstract's login): a GET to this URL template ({org_id}) decides requests
    # without a valid bearer key; positive answers are kept this long.
    forward_auth_url: str = ""
    forward_auth_ttl_seconds: float = 30.0
    forward_auth_timeout_seconds: float = 5.0

    @property
    def rollup_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'dashboard-metrics.db')}"

    @property
    def source_url(self) -> str:
        return self.source_database_url or self.rollup_url

    @property
    def effective_source_schema(self) -> str | None:
        if make_url(self.source_url).get_backend_name() != "postgresql":
            return None
        return self.source_schema or "unstract"

    def with_overrides(self, **overrides: Any) -> Settings:
        present = {k: v for k, v in overrides.items() if v is not None}
        return validate(replace(self, **present))


_FIELD_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(name: str, raw: str) -> Any:
    kind = _FIELD_TYPES[name]
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind == "Path":
            return Path(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: invalid value {raw!r}") from None
    return raw


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in _FIELD_TYPES:
        raw = environ.get(f"{ENV_PREFIX}{name.upper()}")
        if raw is not None:
            values[name] = _coerce(name, raw)
    return validate(Settings(**values))


def _check_url(setting: str, url: str) -> None:
    if not url:
        return
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{setting}: not a database URL: {redact(url)!r}") from None
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigError(
            f"{setting}: unsupported database {parsed.get_backend_name()!r} "
            "(use postgresql+psycopg://... or sqlite:///...)"
        )


def _check_clock(setting: str, value: str) -> None:
    hours, _, minutes = value.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise ConfigError(f"{setting}: expected HH:MM, got {value!r}")


def validate(settings: Settings) -> Settings:
    _check_url(f"{ENV_PREFIX}DATABASE_URL", settings.database_url)
    _check_url(f"{ENV_PREFIX}SOURCE_DATABASE_URL", settings.source_database_url)
    positive = {
        "tick_seconds": settings.tick_seconds,
        "hourly_retention_days": settings.hourly_retention_days,
        "daily_retention_days": settings.daily_retention_days,
        "reconcile_days": settings.reconcile_days,
        "statement_timeout_seconds": settings.statement_timeout_seconds,
        "cache_max_bytes": settings.cache_max_bytes,
        "http_header_timeout_seconds": settings.http_header_timeout_seconds,
        "forward_auth_timeout_seconds": settings.forward_auth_timeout_seconds,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()}: must be positive, got {value}")
    if settings.change_overlap_seconds < 0:
        raise ConfigError(f"{ENV_PREFIX}CHANGE_OVERLAP_SECONDS: must not be negative")
    if settings.hourly_retention_days > settings.daily_retention_days:
        raise ConfigError(
            f"{ENV_PREFIX}HOURLY_RETENTION_DAYS must not exceed {ENV_PREFIX}DAILY_RETENTION_DAYS"
        )
    if not 0 <= settings.health_port <= 65535:
        raise ConfigError(f"{ENV_PREFIX}HEALTH_PORT: must be 0-65535, got {settings.health_port}")
    if not 1 <= settings.port <= 65535:
        raise ConfigError(f"{ENV_PREFIX}PORT: must be 1-65535, got {settings.port}")
    for name in ("reconcile_at", "hourly_cleanup_at", "daily_cleanup_at"):
        _check_clock(f"{ENV_PREFIX}{name.upper()}", getattr(settings, name))
    if not _IDENTIFIER.fullmatch(settings.rollup_schema):
        raise ConfigError(
            f"{ENV_PREFIX}ROLLUP_SCHEMA: expected a schema name (letters, digits, _), "
            f"got {settings.rollup_schema!r}"
        )
    _check_forward_auth(settings)
    if settings.metrics_top_n < 0:
        raise ConfigError(f"{ENV_PREFIX}METRICS_TOP_N: must not be negative")
    return settings


def _check_forward_auth(settings: Settings) -> None:
    url = settings.forward_auth_url
    if url and (not url.startswith(("http://", "https://")) or "{org_id}" not in url):
        raise ConfigError(
            f"{ENV_PREFIX}FORWARD_AUTH_URL: expected an http(s) URL template with {{org_id}}, "
            f"got {redact(url)!r}"
        )
    if settings.forward_auth_ttl_seconds < 0:
        raise ConfigError(f"{ENV_PREFIX}FORWARD_AUTH_TTL_SECONDS: must not be negative")


def redact(url: str) -> str:
    """A database URL safe to log: the password replaced."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
