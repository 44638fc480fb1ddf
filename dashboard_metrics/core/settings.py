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
lists every secret for the log scrubber. The value types live in `setting_types.py`.

Why not pydantic-settings' `BaseSettings`: it is a `BaseModel` that reads the process environment
on every construction. Here `Settings()` means the defaults, the environment is read in exactly
one place (`from_env`, whose mapping tests inject), and `Settings` stays a dataclass
(`dataclasses.replace` and `dataclasses.fields` work on it). The settings are flat strings, so
reading them is one dictionary lookup per field; pydantic does the typing.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass

from dashboard_metrics.core.setting_types import (
    ENV_PREFIX,
    MASK,
    ApiKeys,
    ConfigError,
    DatabaseUrl,
    Dimensions,
    Flag,
    ForwardAuthUrl,
    IngestKeys,
    LogLevel,
    MetricsAuth,
    Namespace,
    NonNegativeInt,
    Port,
    PortOrOff,
    PositiveInt,
    RedisUrl,
    SchemaName,
    Seconds,
    SecretUrl,
    TimeOfDay,
    WholeSeconds,
    env_name,
    invalid,
    mask_url,
    parse_api_keys,
    parse_ingest_keys,
    parse_metrics_auth,
    url_password,
)

DEFAULT_DATA_DIR = Path(".dashboard-metrics")


# -- the schema -------------------------------------------------------------------------------


@dataclass(frozen=True, config=ConfigDict(extra="forbid", validate_default=True))
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: DatabaseUrl = SecretUrl("")  # rollups; default: SQLite file under data_dir
    source_database_url: DatabaseUrl = SecretUrl("")  # default: database_url
    source_schema: str = ""  # default: 'unstract' on PostgreSQL, none on SQLite
    # PostgreSQL: the schema of every table we own
    rollup_schema: SchemaName = "dashboard_metrics"
    redis_url: RedisUrl = SecretUrl("")  # unset: in-process
    # "key=org_a,org_b;key2=*"
    api_keys: ApiKeys = SecretStr("")
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
    namespace: Namespace = "unstract"
    metrics_org_allowlist: str = ""
    metrics_top_n: NonNegativeInt = 0
    # "bearer:TOKEN" or "basic:user:password"
    metrics_auth: MetricsAuth = SecretStr("")
    # "model,deployment": labels the /metrics usage families carry (none: organization only)
    metrics_dimensions: Dimensions = ""
    metrics_max_series: PositiveInt = 10000  # per family; over it a family drops the dimensions
    cache_enabled: Flag = True  # false: the JSON API reads the database on every request
    # seconds; the hour bucket holding "now" (and later ones)
    cache_ttl_current_bucket: Annotated[WholeSeconds, Field(gt=0)] = 60
    cache_ttl_historical: Annotated[WholeSeconds, Field(gt=0)] = 28800  # older hour buckets
    cache_max_bytes: PositiveInt = 64 * 1024 * 1024  # the API's in-process cache layers, in all
    # a request's headers must arrive within this
    http_header_timeout_seconds: Annotated[Seconds, Field(gt=0)] = 10.0
    # Forward auth (Unstract's login): a GET to this URL template ({org_id}) decides requests
    # without a valid bearer key; positive answers are kept this long.
    forward_auth_url: ForwardAuthUrl = SecretUrl("")
    forward_auth_ttl_seconds: Annotated[Seconds, Field(ge=0)] = 30.0
    forward_auth_timeout_seconds: Annotated[Seconds, Field(gt=0)] = 5.0
    # Pushed events: the YAML file declaring their metrics, the keys that may push them (as
    # api_keys; a read key cannot write), and how long the accepted events are kept.
    metrics_file: str = ""
    ingest_keys: IngestKeys = SecretStr("")
    events_retention_days: PositiveInt = 35
    # `push`: the bearer key it sends (one of the service's ingest keys)
    push_key: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.hourly_retention_days > self.daily_retention_days:
            raise invalid(
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
        found += [key for key, _orgs in parse_ingest_keys(self.ingest_keys.get_secret_value())]
        found.append(self.push_key.get_secret_value())
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
        if name in ("api_keys", "ingest_keys"):
            grants = parse_api_keys(value.get_secret_value(), name)
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
_SECRET_FIELDS = {"api_keys", "ingest_keys", "push_key", "metrics_auth", *SECRET_URLS}


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
