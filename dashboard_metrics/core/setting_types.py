"""The value types of the settings schema (core/settings.py): how each kind of value is read
and checked (switches, durations, times of day, ports, URLs, API keys, /metrics credentials),
and the secret types that keep passwords and keys out of reprs and logs. Declarative: no
setting is read here."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pydantic_core import PydanticCustomError

from dashboard_metrics.core.catalogue import DIMENSIONS

ENV_PREFIX = "DASHBOARD_METRICS_"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PROMETHEUS_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MASK = "**********"


class ConfigError(ValueError):
    """A setting is invalid; the message names it."""


def env_name(setting: str) -> str:
    return f"{ENV_PREFIX}{setting.upper()}"


def invalid(message: str) -> PydanticCustomError:
    """A validation error with this message (as context: its own braces ({org_id}) are no
    template fields)."""
    return PydanticCustomError("config", "{message}", {"message": message})


# -- secrets ----------------------------------------------------------------------------------

# scheme://user:PASSWORD@host...: the password runs to the first "@" (SQLAlchemy's rule too).
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^:/@?#]*:)([^@]*)@")


def mask_url(url: str) -> str:
    """``url`` with the password of its user-info masked (the rest is not secret)."""
    return _USERINFO.sub(lambda m: f"{m.group(1)}***@", url, count=1)


def url_password(url: str) -> str:
    match = _USERINFO.match(url)
    return match.group(2) if match else ""


class SecretUrl(SecretStr):
    """A URL that may carry a password: shown (repr, str, logs, `config`) with the password
    masked; ``get_secret_value()`` is the URL to connect with."""

    def _display(self) -> str:
        return mask_url(self.get_secret_value())


# -- value types ------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise invalid("expected true or false (1/0, yes/no, on/off)")
    return value


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*(ms|s|m|h|d)?", re.I)


def _duration(value: Any) -> Any:
    """Seconds as a number, or a duration with a unit: 500ms, 30s, 5m, 1.5h, 1d."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if not match:
            raise invalid("expected seconds or a duration such as 30s, 5m, 1h")
        value = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid("expected a finite number of seconds")
    return value


def _clock(value: str) -> str:
    hours, _, minutes = value.strip().partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise invalid("expected HH:MM")
    return f"{int(hours):02d}:{int(minutes):02d}"


def _log_level(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _schema_name(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise invalid("expected a schema name (lower-case letters, digits, _)")
    return value


def _namespace(value: str) -> str:
    if not _PROMETHEUS_NAME.fullmatch(value):
        raise invalid("not a Prometheus metric name prefix")
    return value


def _dimensions(value: str) -> str:
    """Comma-separated catalogue dimensions, as the canonical list: known names only, each once,
    in the catalogue's order (so the same set is always the same setting)."""
    known = [str(d) for d in DIMENSIONS]
    given = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = [name for name in given if name not in known]
    if unknown:
        raise invalid(f"unknown dimension {unknown[0]!r} (expected some of {', '.join(known)})")
    return ",".join(name for name in known if name in given)


def _database_url(value: SecretUrl) -> SecretUrl:
    url = value.get_secret_value()
    if not url:
        return value
    from sqlalchemy.engine import make_url  # only when a URL is set: `config` stays light
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise invalid("not a database URL") from None
    if backend not in {"sqlite", "postgresql"}:
        raise invalid(
            f"unsupported database {backend!r} (use postgresql+psycopg://... or sqlite:///...)"
        )
    return value


def _redis_url(value: SecretUrl) -> SecretUrl:
    url = value.get_secret_value()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise invalid("expected redis://, rediss:// or unix:// URL")
    return value


def _forward_auth_url(value: SecretUrl) -> SecretUrl:
    url = value.get_secret_value()
    if url and (not url.startswith(("http://", "https://")) or "{org_id}" not in url):
        raise invalid("expected an http(s) URL template with {org_id}")
    return value


def parse_api_keys(spec: str, setting: str = "api_keys") -> list[tuple[str, frozenset[str]]]:
    """``"key1=org_a,org_b;key2=*"`` as (key, organizations) pairs. An error names the entry by
    position only: the message must not reveal the key."""
    grants = []
    for index, entry in enumerate(e.strip() for e in spec.split(";")):
        if not entry:
            continue
        key, sep, orgs = entry.partition("=")
        names = frozenset(o.strip() for o in orgs.split(",") if o.strip())
        if not sep or not key.strip() or not names:
            raise ConfigError(
                f"{env_name(setting)}: entry {index + 1} is not KEY=org[,org...] or KEY=*"
            )
        grants.append((key.strip(), names))
    return grants


def parse_ingest_keys(spec: str) -> list[tuple[str, frozenset[str]]]:
    """The keys that may push events (DASHBOARD_METRICS_INGEST_KEYS), as the API keys."""
    return parse_api_keys(spec, "ingest_keys")


def parse_metrics_auth(raw: str) -> tuple[str, str] | None:
    """``bearer:TOKEN`` -> ("Bearer", TOKEN); ``basic:USER:PASSWORD`` -> ("Basic",
    "USER:PASSWORD"); empty -> None. Never echoes the value: it is a secret."""
    if not raw:
        return None
    kind, _, rest = raw.partition(":")
    if kind == "bearer" and rest:
        return "Bearer", rest
    if kind == "basic" and ":" in rest and rest.partition(":")[0]:
        return "Basic", rest
    raise ConfigError(
        f"{env_name('metrics_auth')}: expected 'bearer:TOKEN' or 'basic:USER:PASSWORD'"
    )


def _as_validator(parse: Callable[[str], object]) -> Callable[[SecretStr], SecretStr]:
    """A field validator from a parser that raises `ConfigError` (whose message names the
    variable: the validation error's location will)."""

    def check(value: SecretStr) -> SecretStr:
        try:
            parse(value.get_secret_value())
        except ConfigError as exc:
            raise invalid(str(exc).partition(": ")[2]) from None
        return value

    return check


Flag = Annotated[bool, BeforeValidator(_flag)]
Seconds = Annotated[float, BeforeValidator(_duration)]
WholeSeconds = Annotated[int, BeforeValidator(_duration)]
TimeOfDay = Annotated[str, AfterValidator(_clock)]
DatabaseUrl = Annotated[SecretUrl, AfterValidator(_database_url)]
Port = Annotated[int, Field(ge=1, le=65535)]
PortOrOff = Annotated[int, Field(ge=0, le=65535)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_log_level)
]
SchemaName = Annotated[str, AfterValidator(_schema_name)]
Namespace = Annotated[str, AfterValidator(_namespace)]
Dimensions = Annotated[str, AfterValidator(_dimensions)]
RedisUrl = Annotated[SecretUrl, AfterValidator(_redis_url)]
ForwardAuthUrl = Annotated[SecretUrl, AfterValidator(_forward_auth_url)]
ApiKeys = Annotated[SecretStr, AfterValidator(_as_validator(parse_api_keys))]
IngestKeys = Annotated[SecretStr, AfterValidator(_as_validator(parse_ingest_keys))]
MetricsAuth = Annotated[SecretStr, AfterValidator(_as_validator(parse_metrics_auth))]
