"""The settings schema: environment variables and flags become typed values, a bad value is one
line naming the variable (or flag), secrets never show, every command validates everything at
start, and `config` prints the effective configuration."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from dashboard_metrics.cli.parser import SETTING_FLAGS
from dashboard_metrics.core import logs
from dashboard_metrics.core.setting_types import ENV_PREFIX, ConfigError, SecretUrl
from dashboard_metrics.core.settings import Settings, bind_refusal, from_env
from dashboard_metrics.exporter.serve import check_bind
from tests.harness import Harness
from tests.processes import run
from tests.test_cli import cli, one_line_error

API_KEY = "k3y-very-secret"
TOKEN = "t0ken-very-secret"
PASSWORD = "pa55-very-secret"
INGEST_KEY = "1ngest-very-secret"
PUSH_KEY = "pu5h-very-secret"
SECRETS = {
    "DASHBOARD_METRICS_API_KEYS": f"{API_KEY}=org_a,org_b;other-key-1234=*",
    "DASHBOARD_METRICS_METRICS_AUTH": f"basic:prom:{TOKEN}",
    "DASHBOARD_METRICS_SOURCE_DATABASE_URL": f"postgresql+psycopg://reader:{PASSWORD}@db/unstract",
    "DASHBOARD_METRICS_REDIS_URL": f"redis://:{PASSWORD}@cache:6379/5",
    "DASHBOARD_METRICS_FORWARD_AUTH_URL": f"http://gate:{PASSWORD}@backend/{{org_id}}/profile/",
    "DASHBOARD_METRICS_INGEST_KEYS": f"{INGEST_KEY}=org_a",
    "DASHBOARD_METRICS_PUSH_KEY": PUSH_KEY,
}
HIDDEN = (API_KEY, "other-key-1234", TOKEN, PASSWORD, INGEST_KEY, PUSH_KEY)


def env(**values: str) -> dict[str, str]:
    return {f"{ENV_PREFIX}{name.upper()}": value for name, value in values.items()}


# -- environment -> typed Settings -------------------------------------------------------------


def test_every_kind_of_value_is_coerced_by_its_type() -> None:
    settings = from_env(
        env(
            data_dir="/srv/metrics",
            port="9000",
            health_port="0",
            allow_unauthenticated="yes",
            cache_enabled="off",
            tick_seconds="2.5",
            change_overlap_seconds="5m",
            statement_timeout_seconds="1500ms",
            cache_ttl_historical="8h",
            forward_auth_ttl_seconds="0",
            reconcile_days="3",
            reconcile_at="4:05",
            log_level="debug",
            metrics_top_n="10",
        )
    )
    assert settings.data_dir == Path("/srv/metrics")
    assert settings.rollup_url == "sqlite:////srv/metrics/dashboard-metrics.db"
    assert (settings.port, settings.health_port, settings.reconcile_days) == (9000, 0, 3)
    assert settings.allow_unauthenticated is True and settings.cache_enabled is False
    assert settings.tick_seconds == 2.5 and settings.change_overlap_seconds == 300.0
    assert settings.statement_timeout_seconds == 1.5
    assert settings.cache_ttl_historical == 28800 and isinstance(settings.cache_ttl_historical, int)
    assert settings.forward_auth_ttl_seconds == 0
    assert settings.reconcile_at == "04:05" and settings.log_level == "DEBUG"
    assert settings.metrics_top_n == 10
    assert from_env({}) == Settings()  # nothing set: the defaults


@pytest.mark.parametrize("word", ["false", "False", "0", "no", "NO", "off", ""])
def test_false_words_are_false(word: str) -> None:
    settings = from_env(env(allow_unauthenticated=word, cache_enabled=word, host="0.0.0.0"))
    assert settings.allow_unauthenticated is False
    assert settings.cache_enabled is False
    # The bug class: a non-empty "false" string must not count as permission to serve openly.
    assert bind_refusal(settings) is not None
    with pytest.raises(ConfigError, match=r"refusing to serve 0\.0\.0\.0"):
        check_bind(settings)


@pytest.mark.parametrize("word", ["true", "TRUE", "1", "yes", "on", " On "])
def test_true_words_are_true(word: str) -> None:
    settings = from_env(env(allow_unauthenticated=word, host="0.0.0.0"))
    assert settings.allow_unauthenticated is True
    assert bind_refusal(settings) is None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("allow_unauthenticated", "maybe", "expected true or false"),
        ("cache_enabled", "enabled", "expected true or false"),
        ("port", "eighty", "expected an integer"),
        ("port", "0", "greater than or equal to 1"),
        ("port", "70000", "less than or equal to 65535"),
        ("health_port", "-1", "greater than or equal to 0"),
        ("tick_seconds", "0", "greater than 0"),
        ("tick_seconds", "soon", "expected seconds or a duration"),
        ("tick_seconds", "inf", "expected seconds or a duration"),
        ("change_overlap_seconds", "-5", "greater than or equal to 0"),
        ("cache_ttl_current_bucket", "1.5", "expected a whole number"),
        ("cache_max_bytes", "0", "greater than 0"),
        ("reconcile_days", "a week", "expected an integer"),
        ("reconcile_at", "25:00", "expected HH:MM"),
        ("daily_cleanup_at", "noon", "expected HH:MM"),
        ("log_level", "loud", "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        ("namespace", "a-b", "not a Prometheus metric name prefix"),
        ("rollup_schema", "Bad Schema", "expected a schema name"),
        ("database_url", "not a url", "not a database URL"),
        ("source_database_url", "mysql://u@h/db", "unsupported database 'mysql'"),
        ("redis_url", "localhost:6379", "expected redis://"),
        ("forward_auth_url", "http://backend/profile/", "URL template with {org_id}"),
        ("forward_auth_timeout_seconds", "0", "greater than 0"),
        ("api_keys", "no-equals-sign", "entry 1 is not KEY=org"),
        ("metrics_auth", "token", "expected 'bearer:TOKEN' or 'basic:USER:PASSWORD'"),
        ("metrics_dimensions", "model,team", "unknown dimension 'team'"),
        ("metrics_dimensions", "project", "expected some of model, workflow, deployment"),
        ("metrics_max_series", "0", "greater than 0"),
        ("metrics_max_series", "many", "expected an integer"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(env(**{name: value}))
    message = str(info.value)
    assert message.startswith(f"{ENV_PREFIX}{name.upper()}: "), message
    assert says in message and "\n" not in message


def test_metrics_dimensions_are_one_canonical_list() -> None:
    # Any order, spaces, case and repeats name the same set: stored in the catalogue's order.
    given = from_env(env(metrics_dimensions=" Deployment, model ,model", metrics_max_series="5"))
    assert given.metrics_dimensions == "model,deployment"
    assert given.metrics_max_series == 5
    defaults = from_env({})
    assert defaults.metrics_dimensions == "" and defaults.metrics_max_series == 10000
    assert from_env(env(metrics_dimensions=" , ")).metrics_dimensions == ""


def test_rules_across_settings_and_every_error_at_once() -> None:
    with pytest.raises(ConfigError, match="HOURLY_RETENTION_DAYS must not exceed"):
        from_env(env(hourly_retention_days="400"))
    with pytest.raises(ConfigError) as info:
        from_env(env(port="x", tick_seconds="-1"))
    assert "DASHBOARD_METRICS_PORT" in str(info.value)
    assert "DASHBOARD_METRICS_TICK_SECONDS" in str(info.value)


def test_an_invalid_settings_object_cannot_be_built() -> None:
    with pytest.raises(ValidationError):
        Settings(port=0)
    with pytest.raises(ValidationError):
        dataclasses.replace(Settings(), metrics_auth="nonsense")
    with pytest.raises(ConfigError, match="DASHBOARD_METRICS_NAMESPACE"):
        Settings().with_overrides(namespace="a b")
    assert Settings().with_overrides(port="81", tick_seconds="1m").tick_seconds == 60.0


# -- secrets -----------------------------------------------------------------------------------


def test_secrets_are_typed_and_masked_in_repr_and_str() -> None:
    settings = from_env(SECRETS)
    assert isinstance(settings.api_keys, SecretStr)
    assert isinstance(settings.metrics_auth, SecretStr)
    for url in ("source_database_url", "redis_url", "forward_auth_url"):
        assert isinstance(getattr(settings, url), SecretUrl)
    shown = (
        repr(settings) + str(settings) + "".join(str(getattr(settings, f)) for f in SETTING_FLAGS)
    )
    for secret in HIDDEN:
        assert secret not in shown
    assert "postgresql+psycopg://reader:***@db/unstract" in shown  # the rest of a URL shows
    assert "redis://:***@cache:6379/5" in shown
    # The code that needs the real values asks for them by name.
    assert PASSWORD in settings.source_url
    assert settings.api_keys.get_secret_value() == SECRETS["DASHBOARD_METRICS_API_KEYS"]
    assert set(HIDDEN) <= set(settings.secrets())


def test_errors_never_echo_a_secret() -> None:
    bad = {
        "DASHBOARD_METRICS_API_KEYS": f"{API_KEY}",  # no "=": invalid
        "DASHBOARD_METRICS_METRICS_AUTH": f"{TOKEN}",
        "DASHBOARD_METRICS_DATABASE_URL": f"mysql://u:{PASSWORD}@h/db",
        "DASHBOARD_METRICS_INGEST_KEYS": f"{INGEST_KEY}",
    }
    for name, value in bad.items():
        with pytest.raises(ConfigError) as info:
            from_env({name: value})
        assert name in str(info.value)
        for secret in HIDDEN:
            assert secret not in str(info.value)
    with pytest.raises(ConfigError) as info:
        Settings().with_overrides(database_url=f"mysql://u:{PASSWORD}@h/db")
    assert "mysql://u:***@h/db" in str(info.value) and PASSWORD not in str(info.value)


def test_log_lines_never_carry_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """What every command does at start (main): its settings' secrets go to the scrubber."""
    settings = from_env(SECRETS)
    logs.setup("INFO")
    logs.redact(settings.secrets())
    log = logging.getLogger("dashboard_metrics.test")
    log.info("settings %r", settings)
    log.info(
        "careless %s %s %s %s %s",
        settings.ingest_keys.get_secret_value(),
        settings.push_key.get_secret_value(),
        settings.api_keys.get_secret_value(),
        settings.metrics_auth.get_secret_value(),
        settings.redis_url.get_secret_value(),
        extra={"fields": {"url": settings.source_url}},
    )
    logged = capsys.readouterr().err
    assert logged.count("\n") == 2
    for secret in HIDDEN:
        assert secret not in logged
    assert "[redacted]" in logged


def test_the_cli_never_prints_a_database_password(tmp_path: Path) -> None:
    """Not in the error line, nor in the DEBUG log's traceback of the failure."""
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:9/nowhere"
    quiet = cli("aggregate", "--once", cwd=tmp_path, DASHBOARD_METRICS_DATABASE_URL=url)
    assert "is unreachable" in one_line_error(quiet)
    loud = cli(
        "aggregate",
        "--once",
        "--log-level",
        "DEBUG",
        cwd=tmp_path,
        DASHBOARD_METRICS_DATABASE_URL=url,
    )
    assert loud.returncode == 1 and '"traceback"' in loud.stderr
    for result in (quiet, loud):
        assert PASSWORD not in result.stdout + result.stderr


# -- every command validates everything at start ---------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DASHBOARD_METRICS_METRICS_AUTH", f"{TOKEN}"),
        ("DASHBOARD_METRICS_METRICS_AUTH", "bearer:"),
        ("DASHBOARD_METRICS_API_KEYS", f"{API_KEY}"),
        ("DASHBOARD_METRICS_NAMESPACE", "unstract-metrics"),
        ("DASHBOARD_METRICS_METRICS_DIMENSIONS", "model,tenant"),
        ("DASHBOARD_METRICS_FORWARD_AUTH_URL", "backend/profile"),
    ],
)
def test_aggregate_refuses_bad_api_and_metrics_settings_at_start(
    h: Harness, variable: str, value: str
) -> None:
    org = h.org()
    org.usage(h.clock().replace(hour=1))
    result = run(h.settings, "aggregate", "--once", **{variable: value})
    assert result.returncode == 2
    line = one_line_error(result)
    assert variable in line
    assert TOKEN not in line and API_KEY not in line
    assert result.stdout == ""
    assert not h.tier_rows("hourly")  # refused before its first tick


@pytest.mark.parametrize("command", ["migrate", "report", "doctor", "dashboards"])
def test_every_command_validates_the_whole_configuration(command: str, tmp_path: Path) -> None:
    result = cli(command, "--help", cwd=tmp_path, DASHBOARD_METRICS_PORT="x")
    assert result.returncode == 0  # --help needs no settings
    args = ["--out", str(tmp_path / "out")] if command == "dashboards" else []
    result = cli(command, *args, cwd=tmp_path, DASHBOARD_METRICS_CACHE_ENABLED="sometimes")
    assert result.returncode == 2
    assert "DASHBOARD_METRICS_CACHE_ENABLED: expected true or false" in one_line_error(result)
    assert not (tmp_path / ".dashboard-metrics").exists() and not (tmp_path / "out").exists()


def test_a_bad_flag_value_names_the_flag(tmp_path: Path) -> None:
    line = one_line_error(cli("migrate", "--log-level", "loud", cwd=tmp_path))
    assert line.startswith("dashboard-metrics: error: --log-level: must be 'DEBUG'")
    line = one_line_error(
        cli("migrate", "--rollup-schema", "Bad", cwd=tmp_path, DASHBOARD_METRICS_PORT="80")
    )
    assert "--rollup-schema" in line and "DASHBOARD_METRICS_ROLLUP_SCHEMA" not in line
    # Flags are read by the same schema as the variables.
    line = one_line_error(cli("aggregate", "--tick-seconds", "soon", cwd=tmp_path))
    assert "--tick-seconds: expected seconds or a duration such as 30s, 5m, 1h" in line
    line = one_line_error(cli("serve", "--port", "0", cwd=tmp_path))
    assert "--port: must be greater than or equal to 1, got '0'" in line
    # A flag replaces a bad variable before anything is validated.
    ok = cli(
        "migrate",
        "--log-level",
        "WARNING",
        cwd=tmp_path,
        DASHBOARD_METRICS_LOG_LEVEL="loud",
    )
    assert ok.returncode == 0, ok.stderr


def test_serve_refuses_an_open_bind_before_anything_else(tmp_path: Path) -> None:
    result = cli(
        "serve",
        "--host",
        "0.0.0.0",
        cwd=tmp_path,
        DASHBOARD_METRICS_ALLOW_UNAUTHENTICATED="false",
    )
    assert result.returncode == 2
    assert "refusing to serve 0.0.0.0" in one_line_error(result)
    assert not (tmp_path / ".dashboard-metrics").exists()


# -- dashboard-metrics config ------------------------------------------------------------------


def test_config_prints_the_effective_configuration_masked(tmp_path: Path) -> None:
    result = cli(
        "config",
        "--port",
        "9001",
        "--health-port",
        "9002",
        cwd=tmp_path,
        DASHBOARD_METRICS_TICK_SECONDS="2m",
        DASHBOARD_METRICS_HEALTH_PORT="8081",
        **SECRETS,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for secret in HIDDEN:
        assert secret not in out + result.stderr
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith(ENV_PREFIX)}
    assert len(lines) == len(dataclasses.fields(Settings))  # every setting
    assert lines["DASHBOARD_METRICS_PORT"].split()[1:] == ["9001", "(--port)"]
    assert lines["DASHBOARD_METRICS_TICK_SECONDS"].split()[1:] == ["120.0", "(environment)"]
    assert lines["DASHBOARD_METRICS_HEALTH_PORT"].split()[1:] == ["9002", "(--health-port)"]
    assert lines["DASHBOARD_METRICS_HOST"].split()[1:] == ["127.0.0.1", "(default)"]
    assert "**********=org_a,org_b; **********=*" in lines["DASHBOARD_METRICS_API_KEYS"]
    assert "basic:prom:**********" in lines["DASHBOARD_METRICS_METRICS_AUTH"]
    assert "**********=org_a" in lines["DASHBOARD_METRICS_INGEST_KEYS"]
    assert lines["DASHBOARD_METRICS_PUSH_KEY"].split()[1:] == ["**********", "(environment)"]
    assert "postgresql+psycopg://reader:***@db/unstract" in out
    assert "API auth" in out and "2 API keys and forward auth" in out
    assert not (tmp_path / ".dashboard-metrics").exists()  # touches no database


def test_config_json_and_check(tmp_path: Path) -> None:
    result = cli("config", "--json", cwd=tmp_path, DASHBOARD_METRICS_CACHE_ENABLED="no", **SECRETS)
    document = json.loads(result.stdout)
    assert document["settings"]["DASHBOARD_METRICS_CACHE_ENABLED"] == {
        "value": "false",
        "from": "environment",
    }
    assert document["effective"]["API cache"] == "off"
    assert all(secret not in result.stdout for secret in HIDDEN)

    valid = cli("config", "--check", cwd=tmp_path, **SECRETS)
    assert valid.returncode == 0 and valid.stdout.endswith("\nconfiguration is valid\n")
    assert "DASHBOARD_METRICS_API_KEYS" in valid.stdout  # the configuration, printed
    assert all(secret not in valid.stdout + valid.stderr for secret in HIDDEN)
    typo = cli("config", "--check", cwd=tmp_path, DASHBOARD_METRICS_API_KEY="k=*")
    assert typo.returncode == 1
    assert "DASHBOARD_METRICS_API_KEY is not a setting" in typo.stderr
    bad = cli("config", "--check", cwd=tmp_path, DASHBOARD_METRICS_HEALTH_PORT="http")
    assert bad.returncode == 2
    assert "DASHBOARD_METRICS_HEALTH_PORT: expected an integer" in one_line_error(bad)
    open_bind = cli("config", "--check", "--host", "0.0.0.0", cwd=tmp_path)
    assert open_bind.returncode == 0  # `aggregate` may bind it for its probes; serve may not
    assert "serve and up would refuse to start" in open_bind.stderr


def test_config_answers_without_the_database_stack(tmp_path: Path) -> None:
    """Validating settings needs pydantic, not SQLAlchemy or aiohttp (on the embedded default,
    SQLAlchemy only tells whether the source is PostgreSQL)."""
    probe = (
        "import sys\n"
        "from dashboard_metrics.cli.main import main\n"
        "assert main(['config', '--check']) == 0\n"
        "print('HEAVY', [m for m in ('aiohttp', 'alembic', 'psycopg') if m in sys.modules])\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=base, capture_output=True, text=True
    )
    assert "HEAVY []" in result.stdout, result.stderr[-500:]
