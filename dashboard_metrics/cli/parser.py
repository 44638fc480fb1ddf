"""The command line's shape: commands, their flags and help. Imports nothing heavy, so
`--help`, `--version` and shell completion answer at once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

PROG = "dashboard-metrics"
DESCRIPTION = (
    "dashboard-metrics: usage metrics for an Unstract-shaped document and LLM platform. "
    "It rolls the platform's tables up into exact hourly, daily and monthly totals and serves "
    "them as a JSON API, a Prometheus /metrics endpoint and Grafana dashboards. "
    "Start with `dashboard-metrics up` (embedded demo, no configuration)."
)
EPILOG = (
    "Settings come from DASHBOARD_METRICS_* environment variables; a flag overrides its "
    "variable. `dashboard-metrics <command> --help` lists a command's flags."
)


def package_version() -> str:
    try:
        return version(PROG)
    except PackageNotFoundError:  # pragma: no cover - running from a tree without metadata
        return "unknown"


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def non_negative(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}")
    return number


def timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 date or time such as 2026-03-15 or 2026-03-15T12:00:00Z, "
            f"got {value!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SettingFlag:
    """A flag that overrides one DASHBOARD_METRICS_* setting."""

    setting: str
    flag: str
    help: str
    kind: Callable[[str], object] | None = None  # argparse type; by default the settings
    # schema reads the value (core/settings.py), as it reads the variable's
    switch: bool = False  # a store_true flag

    def add_to(self, group: argparse._ArgumentGroup) -> None:
        if self.switch:
            group.add_argument(
                self.flag, dest=self.setting, action="store_true", default=None, help=self.help
            )
        else:
            group.add_argument(self.flag, dest=self.setting, type=self.kind or str, help=self.help)


# One place for every setting that has a flag; the README's configuration table names them.
SETTING_FLAGS: dict[str, SettingFlag] = {
    f.setting: f
    for f in (
        SettingFlag("log_level", "--log-level", "DEBUG, INFO, WARNING or ERROR (default INFO)"),
        SettingFlag(
            "metrics_file",
            "--metrics-file",
            "YAML file declaring the pushed metrics (validated at start; default: none)",
        ),
        SettingFlag(
            "push_key",
            "--key",
            "`push`: the bearer key it sends, one of the service's ingest keys (prefer "
            "DASHBOARD_METRICS_PUSH_KEY: a flag's value shows in `ps`)",
        ),
        SettingFlag(
            "data_dir",
            "--data-dir",
            "directory of the embedded SQLite file (default .dashboard-metrics)",
        ),
        SettingFlag(
            "database_url",
            "--database-url",
            "rollup database, postgresql+psycopg://... or sqlite:///... "
            "(default: SQLite file in the data directory)",
        ),
        SettingFlag(
            "rollup_schema",
            "--rollup-schema",
            "PostgreSQL schema of the rollup tables (default dashboard_metrics)",
        ),
        SettingFlag(
            "source_database_url",
            "--source-database-url",
            "Unstract source database (default: the rollup database)",
        ),
        SettingFlag(
            "source_schema", "--source-schema", "source schema (default 'unstract' on PostgreSQL)"
        ),
        SettingFlag("host", "--host", "bind address (default 127.0.0.1)"),
        SettingFlag("port", "--port", "HTTP port (default 8080)"),
        SettingFlag(
            "redis_url", "--redis-url", "Redis for the API cache (default: in-process cache)"
        ),
        SettingFlag(
            "allow_unauthenticated",
            "--allow-unauthenticated",
            "serve a non-loopback address without DASHBOARD_METRICS_API_KEYS",
            switch=True,
        ),
        SettingFlag(
            "tick_seconds",
            "--tick-seconds",
            "aggregator tick interval: seconds, or a duration such as 30s or 5m (default 60)",
        ),
        SettingFlag(
            "health_port",
            "--health-port",
            "serve /healthz and /readyz for probes on this port (default 0: off)",
        ),
    )
}

ROLLUP = ("data_dir", "database_url", "rollup_schema")
SOURCE = ("source_database_url", "source_schema")
HTTP = ("host", "port", "redis_url", "allow_unauthenticated")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    settings: tuple[str, ...]  # the settings this command reads, each with its flag


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command(
            "up",
            "embedded all-in-one: SQLite and an in-process cache under ./.dashboard-metrics/, "
            "demo data on first start, migrate, backfill, the aggregator loop and the HTTP "
            "service in one process",
            (*ROLLUP, *HTTP, "tick_seconds"),
        ),
        Command(
            "serve",
            "the HTTP service: the index page, JSON API, /metrics, /healthz and /readyz",
            (*ROLLUP, *SOURCE, *HTTP),
        ),
        Command(
            "aggregate",
            "the aggregator daemon (ticks, reconciliation, retention); --once for one tick",
            (*ROLLUP, *SOURCE, "tick_seconds", "host", "health_port"),
        ),
        Command(
            "backfill",
            "recompute whole UTC days and whole months from the source",
            (*ROLLUP, *SOURCE),
        ),
        Command(
            "cleanup",
            "apply retention now: delete rollup rows older than the retention",
            (*ROLLUP, *SOURCE),
        ),
        Command("migrate", "create or upgrade the rollup schema", ROLLUP),
        Command(
            "generate-test-data",
            "create the Unstract-shaped source tables if absent and fill them (this WRITES to "
            "the source database: for the embedded demo, tests and benchmarks, never a "
            "production one)",
            (*ROLLUP, *SOURCE),
        ),
        Command("dashboards", "write the Grafana dashboards and Prometheus rules", ()),
        Command(
            "doctor",
            "check connectivity, source schema, recommended source indexes, aggregator lag",
            (*ROLLUP, *SOURCE),
        ),
        Command(
            "config",
            "print the effective configuration: every DASHBOARD_METRICS_* setting, its value "
            "(secrets masked) and where it came from; --check only validates it",
            (*ROLLUP, *SOURCE, *HTTP, "tick_seconds", "health_port"),
        ),
        Command(
            "report",
            "the numbers in a terminal: per organization, totals of each metric, a daily "
            "sparkline and the top cost days, from the rollups",
            (*ROLLUP, *SOURCE),
        ),
        Command(
            "push",
            "send pushed events (JSON lines, one event a line) to a running service's events "
            "endpoint, in batches; safe to re-run (event ids make it idempotent)",
            ("push_key",),
        ),
        Command("completion", "print a shell completion script (bash or zsh)", ()),
    )
}


def _setting_groups(sub: argparse.ArgumentParser, command: Command) -> None:
    groups = (
        ("databases", (*ROLLUP, *SOURCE)),
        ("HTTP service", (*HTTP, "health_port")),
        ("aggregator", ("tick_seconds",)),
        ("events endpoint", ("push_key",)),
    )
    for title, names in groups:
        wanted = [n for n in names if n in command.settings]
        if not wanted:
            continue
        group = sub.add_argument_group(f"{title} (override DASHBOARD_METRICS_* variables)")
        for name in wanted:
            SETTING_FLAGS[name].add_to(group)
    general = sub.add_argument_group("general")
    SETTING_FLAGS["log_level"].add_to(general)
    SETTING_FLAGS["metrics_file"].add_to(general)


def _aggregate_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--once", action="store_true", help="run one tick and exit")
    sub.add_argument(
        "--reconcile",
        action="store_true",
        help="with --once: also reconcile the last RECONCILE_DAYS days",
    )
    sub.add_argument(
        "--json", action="store_true", help="with --once: print the tick's record as JSON"
    )


def _backfill_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--days",
        type=positive,
        default=30,
        help="whole UTC days back from today to recompute (default 30)",
    )
    sub.add_argument("--org-id", help="only this organization (string id, e.g. org_abc123)")
    sub.add_argument("--dry-run", action="store_true", help="print per tier what would be written")
    sub.add_argument("--skip-hourly", action="store_true", help="do not write hourly rows")
    sub.add_argument("--skip-daily", action="store_true", help="do not write daily rows")
    sub.add_argument("--skip-monthly", action="store_true", help="do not write monthly rows")


def _cleanup_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--tier",
        choices=("hourly", "daily"),
        required=True,
        help="which tier to clean (monthly rows are kept forever)",
    )
    sub.add_argument(
        "--retention-days",
        type=positive,
        help="keep this many days (default: HOURLY_RETENTION_DAYS 30 or DAILY_RETENTION_DAYS 365)",
    )


def _generate_test_data_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--org-id", help="generate for this one organization (string id)")
    sub.add_argument("--orgs", type=positive, default=3, help="organizations (default 3)")
    sub.add_argument("--days", type=positive, default=7, help="days up to now (default 7)")
    sub.add_argument(
        "--records-per-day",
        type=positive,
        default=15,
        help="workflow executions per organization per day (default 15)",
    )
    sub.add_argument(
        "--clean", action="store_true", help="delete these organizations' source rows first"
    )
    sub.add_argument("--seed", type=non_negative, default=42, help="random seed (default 42)")
    sub.add_argument(
        "--until",
        type=timestamp,
        metavar="TIME",
        help="end of the generated range, ISO-8601 (2026-03-15 or 2026-03-15T12:00:00Z; "
        "naive times are UTC; default now)",
    )


def _dashboards_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--output",
        "--out",
        dest="out",
        metavar="DIR",
        help="output directory (default dashboards/generated under the working directory)",
    )
    sub.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the files on disk differ from what would be written",
    )
    sub.add_argument(
        "--runbook-base-url",
        metavar="URL",
        help="absolute http(s) URL of the README (or a copy of its runbooks) that the alerts' "
        "runbook_url points into, as URL#<alert> (default: a placeholder)",
    )


def _report_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--org-id", help="only this organization (string id)")
    sub.add_argument(
        "--days",
        type=positive,
        default=7,
        help="UTC days up to now, today included (default 7, at most 365)",
    )
    sub.add_argument("--json", action="store_true", help="print the numbers as JSON")


def _config_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--check",
        action="store_true",
        help="end with whether the configuration is valid; exit 1 when a "
        "DASHBOARD_METRICS_* variable is not a setting (a misspelt name is otherwise ignored)",
    )
    sub.add_argument("--json", action="store_true", help="print the configuration as JSON")


def batch_size(value: str) -> int:
    number = positive(value)
    if number > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"at most {MAX_BATCH} (the endpoint's limit)")
    return number


MAX_BATCH = 10_000  # events a request may carry


def _push_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "file",
        metavar="FILE",
        help="JSON lines, one event a line: {id, metric, value, timestamp, labels} and "
        "optionally org_id; - reads stdin",
    )
    sub.add_argument("--org-id", metavar="ORG", help="organization of the lines without an org_id")
    sub.add_argument(
        "--url",
        metavar="URL",
        help="the service's base URL (default http://HOST:PORT from DASHBOARD_METRICS_HOST "
        "and DASHBOARD_METRICS_PORT)",
    )
    sub.add_argument(
        "--batch-size",
        type=batch_size,
        default=1000,
        metavar="N",
        help=f"events per request (default 1000, at most {MAX_BATCH}; a request also stays "
        "under 5 MB)",
    )
    sub.add_argument(
        "--retries",
        type=non_negative,
        default=5,
        metavar="N",
        help="retries of a batch after a connection error, a timeout, 429, 502, 503 or 504, "
        "with exponential backoff (default 5)",
    )
    sub.add_argument(
        "--timeout",
        type=positive,
        default=60,
        metavar="SECONDS",
        help="seconds to wait for each request's answer (default 60)",
    )


def _completion_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete for")


# Each command's own flags (beside the settings flags of _setting_groups).
COMMAND_FLAGS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "aggregate": _aggregate_flags,
    "backfill": _backfill_flags,
    "cleanup": _cleanup_flags,
    "generate-test-data": _generate_test_data_flags,
    "dashboards": _dashboards_flags,
    "report": _report_flags,
    "config": _config_flags,
    "push": _push_flags,
    "completion": _completion_flags,
}


def _command_flags(name: str, sub: argparse.ArgumentParser) -> None:
    add = COMMAND_FLAGS.get(name)
    if add is not None:
        add(sub)


class Parser(argparse.ArgumentParser):
    """Usage errors are one line too: what is wrong and where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"{PROG} {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for command in COMMANDS.values():
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        _command_flags(command.name, sub)
        if command.name != "completion":
            _setting_groups(sub, command)
    return parser


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> list[str]:
    """The long options of a parser (for completion and tests)."""
    return [
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    ]
