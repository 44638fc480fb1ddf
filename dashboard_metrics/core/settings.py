"""Configuration: one validated schema for every DASHBOARD_METRICS_* setting, with command-line
flags on top.

`Settings` is a frozen pydantic dataclass: each field's type coerces and checks its value
(booleans, integers, seconds and durations, paths, ports, clock times, URLs), so an invalid
`Settings` cannot exist, whoever builds it (`from_env`, a flag, `dataclasses.replace`, a test).
`from_env` and `Settings.with_overrides` turn a validation failure into one `ConfigError` line
that names the variable (the CLI swaps in the flag's name for a flag's value) and never echoes a
secret.

Secrets are typed as secrets: the API keys and the /metrics credentials are `SecretStr`, the
URLs that may carry a password (databases, Redis, forward auth) are `SecretUrl`. Their repr and
str are masked; `.get_secret_value()` is the one way to the real value. `Settings.secrets()`
lists every secret for the log scrubber.

Why not pydantic-settings' `BaseSettings`: it is a `BaseModel` that reads the process environment
on every construction. Here `Settings()` means the defaults, the environment is read in exactly
one place (`from_env`, whose mapping tests inject), and `Settings` stays a dataclass
(`dataclasses.replace` and `dataclasses.fields` work on it). The settings are flat strings, so
reading them is one dictionary lookup per field; pydantic does the typing.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

ENV_PREFIX = "DASHBOARD_METRICS_"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PROMETHEUS_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DEFAULT_DATA_DIR = Path(".dashboard-metrics")
MASK = "**********"


class ConfigError(ValueError):
    """A setting is invalid; the message names it."""


def env_name(setting: str) -> str:
    return f"{ENV_PREFIX}{setting.upper()}"


def _invalid(message: str) -> PydanticCustomError:
    # The message goes in as context: its own braces ({org_id}) are no template fields.
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
        raise _invalid("expected true or false (1/0, yes/no, on/off)")
    return value


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*(ms|s|m|h|d)?", re.I)


def _duration(value: Any) -> Any:
    """Seconds as a number, or a duration with a unit: 500ms, 30s, 5m, 1.5h, 1d."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if not match:
            raise _invalid("expected seconds or a duration such as 30s, 5m, 1h")
        value = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid("expected a finite number of seconds")
    return value


def _clock(value: str) -> str:
    hours, _, minutes = value.strip().partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise _invalid("expected HH:MM")
    return f"{int(hours):02d}:{int(minutes):02d}"


def _log_level(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _schema_name(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise _invalid("expected a schema name (lower-case letters, digits, _)")
    return value


def _namespace(value: str) -> str:
    if not _PROMETHEUS_NAME.fullmatch(value):
        raise _invalid("not a Prometheus metric name prefix")
    return value


def _database_url(value: SecretUrl) -> SecretUrl:
    url = value.get_secret_value()
    if not url:
        return value
    from sqlalchemy.engine import make_url  # only when a URL is set: `config` stays light
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise _invalid("not a database URL") from None
    if backend not in {"sqlite", "postgresql"}:
        raise _invalid(
            f"unsupported database {backend!r} (use postgresql+psycopg://... or sqlite:///...)"
        )
    return value


def _redis_url(value: SecretUrl) -> SecretUrl:
    url = value.get_secret_value()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise _invalid("expected redis://, rediss:// or unix:// URL")
    return value


def _forward_auth_url(value: SecretUrl) -> SecretUrl:
    url = value.get_secret_value()
    if url and (not url.startswith(("http://", "https://")) or "{org_id}" not in url):
        raise _invalid("expected an http(s) URL template with {org_id}")
    return value


def parse_api_keys(spec: str) -> list[tuple[str, frozenset[str]]]:
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
                f"{env_name('api_keys')}: entry {index + 1} is not KEY=org[,org...] or KEY=*"
            )
        grants.append((key.strip(), names))
    return grants


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
            raise _invalid(str(exc).partition(": ")[2]) from None
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


# -- the schema -------------------------------------------------------------------------------


@dataclass(frozen=True, config=ConfigDict(extra="forbid", validate_default=True))
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: DatabaseUrl = SecretUrl("")  # rollups; default: SQLite file under data_dir
    source_database_url: DatabaseUrl = SecretUrl("")  # default: database_url
    source_schema: str = ""  # default: 'unstract' on PostgreSQL, none on SQLite
    # PostgreSQL: the schema of every table we own
    rollup_schema: Annotated[str, AfterValidator(_schema_name)] = "dashboard_metrics"
    redis_url: Annotated[SecretUrl, AfterValidator(_redis_url)] = SecretUrl("")  # unset: in-process
    # "key=org_a,org_b;key2=*"
    api_keys: Annotated[SecretStr, AfterValidator(_as_validator(parse_api_keys))] = SecretStr("")
    host: str = "127.0.0.1"
    port: Port = 8080
    allow_unauthenticated: Flag = False
    health_port: PortOrOff = 0  # `aggregate`: serve /healthz and /readyz on this port (0: off)
    tick_seconds: Annotated[Seconds, Field(gt=0)] = 60.0
    change_overlap_seconds: Annotated[Seconds, Field(ge=0)] = 300.0
    reconcile_days: PositiveInt = 7
    reconcile_at: TimeOfDay = "04:40"
    hourly_retention_days: PositiveInt = 30
    daily_retention_days: PositiveInt = 365
    hourly_cleanup_at: TimeOfDay = "02:00"
    daily_cleanup_at: TimeOfDay = "03:00"
    statement_timeout_seconds: Annotated[Seconds, Field(gt=0)] = 30.0
    log_level: LogLevel = "INFO"
    namespace: Annotated[str, AfterValidator(_namespace)] = "unstract"
    metrics_org_allowlist: str = ""
    metrics_top_n: NonNegativeInt = 0
    # "bearer:TOKEN" or "basic:user:password"
    metrics_auth: Annotated[SecretStr, AfterValidator(_as_validator(parse_metrics_auth))] = (
        SecretStr("")
    )
    cache_enabled: Flag = True  # false: the JSON API reads the database on every request
    # seconds; the hour bucket holding "now" (and later ones)
    cache_ttl_current_bucket: Annotated[WholeSeconds, Field(gt=0)] = 60
    cache_ttl_historical: Annotated[WholeSeconds, Field(gt=0)] = 28800  # older hour buckets
    cache_max_bytes: PositiveInt = 64 * 1024 * 1024  # the API's in-process cache layers, in all
    # a request's headers must arrive within this
    http_header_timeout_seconds: Annotated[Seconds, Field(gt=0)] = 10.0
    # Forward auth (Unstract's login): a GET to this URL template ({org_id}) decides requests
    # without a valid bearer key; positive answers are kept this long.
    forward_auth_url: Annotated[SecretUrl, AfterValidator(_forward_auth_url)] = SecretUrl("")
    forward_auth_ttl_seconds: Annotated[Seconds, Field(ge=0)] = 30.0
    forward_auth_timeout_seconds: Annotated[Seconds, Field(gt=0)] = 5.0

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.hourly_retention_days > self.daily_retention_days:
            raise _invalid(
                f"{env_name('hourly_retention_days')} must not exceed "
                f"{env_name('daily_retention_days')}"
            )
        return self

    @property
    def rollup_url(self) -> str:
        """The rollup database URL to connect with (it carries the password)."""
        return self.database_url.get_secret_value() or (
            f"sqlite:///{(self.data_dir / 'dashboard-metrics.db')}"
        )

    @property
    def source_url(self) -> str:
        """The source database URL to connect with (it carries the password)."""
        return self.source_database_url.get_secret_value() or self.rollup_url

    @property
    def effective_source_schema(self) -> str | None:
        from sqlalchemy.engine import make_url

        if make_url(self.source_url).get_backend_name() != "postgresql":
            return None
        return self.source_schema or "unstract"

    def with_overrides(self, **overrides: Any) -> Settings:
        present = {k: v for k, v in overrides.items() if v is not None}
        try:
            return dataclasses.replace(self, **present)
        except ValidationError as exc:
            raise ConfigError(explain(exc)) from None

    def secrets(self) -> list[str]:
        """Every secret value, for the log scrubber: API keys, the /metrics credentials, URL
        passwords (as written and decoded)."""
        found = [key for key, _orgs in parse_api_keys(self.api_keys.get_secret_value())]
        auth = parse_metrics_auth(self.metrics_auth.get_secret_value())
        if auth is not None:
            found.append(auth[1])
            if auth[0] == "Basic":
                found.append(auth[1].partition(":")[2])
        for url in SECRET_URLS:
            password = url_password(getattr(self, url).get_secret_value())
            found += [password, unquote(password)]
        return [secret for secret in dict.fromkeys(found) if secret]

    def display(self, name: str) -> str:
        """One setting's value as `config` shows it: secrets masked, the rest as is."""
        value = getattr(self, name)
        if isinstance(value, SecretUrl):
            return str(value)
        if name == "api_keys":
            grants = parse_api_keys(value.get_secret_value())
            return "; ".join(f"{MASK}={','.join(sorted(orgs))}" for _key, orgs in grants)
        if name == "metrics_auth":
            auth = parse_metrics_auth(value.get_secret_value())
            if auth is None:
                return ""
            user = f"{auth[1].partition(':')[0]}:" if auth[0] == "Basic" else ""
            return f"{auth[0].lower()}:{user}{MASK}"
        if isinstance(value, SecretStr):
            return MASK if value.get_secret_value() else ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


SECRET_URLS = ("database_url", "source_database_url", "redis_url", "forward_auth_url")
SETTING_NAMES = tuple(f.name for f in dataclasses.fields(Settings))
_SECRET_FIELDS = {"api_keys", "metrics_auth", *SECRET_URLS}


_PLAIN = {
    "int_parsing": "expected an integer",
    "int_from_float": "expected a whole number",
    "int_type": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "path_type": "expected a path",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "unexpected_keyword_argument": "not a setting",
}


def explain(exc: ValidationError) -> str:
    """One line naming each invalid setting by its variable; a secret's value never shown."""
    parts = []
    for error in exc.errors():
        message = _PLAIN.get(error["type"]) or error["msg"].replace("Input should be", "must be")
        if not error["loc"]:  # a rule across settings: the message names them
            parts.append(message)
            continue
        name = str(error["loc"][0])
        if name not in SETTING_NAMES:
            parts.append(f"{name}: {message}")
            continue
        given = error.get("input")
        if name in SECRET_URLS and isinstance(given, str | SecretStr):
            url = given.get_secret_value() if isinstance(given, SecretStr) else given
            parts.append(f"{env_name(name)}: {message}, got {mask_url(url)!r}")
        elif name in _SECRET_FIELDS or isinstance(given, SecretStr):
            parts.append(f"{env_name(name)}: {message}")  # never the value
        else:
            parts.append(f"{env_name(name)}: {message}, got {given!r}")
    return "; ".join(parts)


def from_env(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """The settings the DASHBOARD_METRICS_* variables give (defaults for the unset ones), with
    ``overrides`` (a command's flags) on top; validated once, as a whole."""
    environ = os.environ if environ is None else environ
    given: dict[str, Any] = {
        name: environ[env_name(name)] for name in SETTING_NAMES if env_name(name) in environ
    }
    given.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(explain(exc)) from None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """DASHBOARD_METRICS_* variables that are no setting (a misspelt one is otherwise ignored)."""
    environ = os.environ if environ is None else environ
    known = {env_name(name) for name in SETTING_NAMES}
    return sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)


# -- rules that depend on the command ----------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host in {"localhost", ""}:
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


def bind_refusal(settings: Settings) -> str | None:
    """Why `serve` and `up` refuse ``settings.host``, or None. Without API keys or forward auth
    the JSON API is open: only loopback, unless explicitly allowed."""
    if (
        settings.api_keys
        or settings.forward_auth_url
        or settings.allow_unauthenticated
        or is_loopback(settings.host)
    ):
        return None
    return (
        f"refusing to serve {settings.host} without {ENV_PREFIX}API_KEYS or "
        f"{ENV_PREFIX}FORWARD_AUTH_URL; set keys, bind "
        f"127.0.0.1, or pass --allow-unauthenticated ({ENV_PREFIX}ALLOW_UNAUTHENTICATED=1)"
    )
