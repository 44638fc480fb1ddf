"""The command line's shape: commands, their flags and help. Imports nothing heavy, so
`--help`, `--version` and shell completion answer at once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

from dashboard_metrics.cli.flags import COMMAND_FLAGS

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
