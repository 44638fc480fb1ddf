"""`dashboard-metrics <command>`: parse, build the settings, run the command, and turn every
failure into one line on stderr with a non-zero exit.

Settings come from DASHBOARD_METRICS_* environment variables; flags override them. The command
implementations (and SQLAlchemy, Alembic, aiohttp) are imported only after parsing.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dashboard_metrics.cli.errors import CommandError
from dashboard_metrics.cli.parser import COMMANDS, PROG, SETTING_FLAGS, build_parser

if TYPE_CHECKING:
    from dashboard_metrics.core.settings import Settings

__all__ = ["COMMANDS", "PROG", "CommandError", "build_parser", "main"]

log = logging.getLogger("dashboard_metrics.cli")


def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings with the flags given on top, validated as a whole. A bad
    flag value is reported under the flag's name, not the variable's."""
    from dashboard_metrics.core.setting_types import ConfigError, env_name
    from dashboard_metrics.core.settings import from_env

    given = {name: getattr(args, name, None) for name in SETTING_FLAGS}
    given = {name: value for name, value in given.items() if value is not None}
    try:
        return from_env(overrides=given)
    except ConfigError as exc:
        message = str(exc)
        for name in given:
            message = re.sub(rf"\b{env_name(name)}\b", SETTING_FLAGS[name].flag, message)
        raise ConfigError(message) from None


def install_metrics_file(settings: Settings, args: argparse.Namespace) -> None:
    """Validate the metrics file and add its metrics to the catalogue; an error names the
    flag when the flag gave the file."""
    from dashboard_metrics.core import pushed_metrics
    from dashboard_metrics.core.setting_types import ConfigError, env_name

    try:
        pushed_metrics.install(settings.metrics_file)
    except ConfigError as exc:
        if getattr(args, "metrics_file", None) is None:
            raise
        flag = SETTING_FLAGS["metrics_file"].flag
        raise ConfigError(str(exc).replace(env_name("metrics_file"), flag, 1)) from None


def _run(args: argparse.Namespace) -> int:
    if args.command == "completion":
        from dashboard_metrics.cli.completion import script

        sys.stdout.write(script(build_parser(), args.shell))
        return 0
    from dashboard_metrics.core import logs

    # Every command starts by validating the whole configuration (/metrics and API settings
    # included, whether or not it serves them), before it touches anything. `serve` and `up`
    # then check the bind rule first thing (exporter/serve.py's check_bind).
    settings = settings_from(args)
    install_metrics_file(settings, args)
    logs.setup(settings.log_level)
    logs.redact(settings.secrets())
    if args.command == "config":
        from dashboard_metrics.cli.config import run_config

        return run_config(settings, args)
    from dashboard_metrics.cli import commands

    return commands.RUN[args.command](settings, args)


def _one_line(exc: BaseException) -> str:
    from dashboard_metrics.core.db import first_line

    return first_line(exc)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `dashboard-metrics report | head`
        sys.stderr.close()
        return 0
    except Exception as exc:
        code, message = _explain(exc)
        log.debug("command failed", exc_info=True)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return code


def _explain(exc: Exception) -> tuple[int, str]:
    """Exit code and one line for any failure: ours, a database's, the OS's, or a bug."""
    from sqlalchemy.exc import SQLAlchemyError

    from dashboard_metrics.core.db import DatabaseError
    from dashboard_metrics.core.setting_types import ConfigError

    if isinstance(exc, ConfigError):
        return 2, str(exc)
    if isinstance(exc, CommandError):
        return exc.exit_code, str(exc)
    if isinstance(exc, DatabaseError):
        return 1, str(exc)
    if isinstance(exc, SQLAlchemyError) or type(exc).__module__.startswith("psycopg"):
        return 1, f"database: {_one_line(exc)}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return 1, f"{exc.strerror or exc}{where}"
    return 1, (
        f"unexpected {type(exc).__name__}: {_one_line(exc)} "
        f"(run with --log-level DEBUG for details)"
    )


if __name__ == "__main__":
    sys.exit(main())
