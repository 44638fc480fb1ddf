"""`dashboard-metrics <command>`: one module wiring every subcommand.

Settings come from DASHBOARD_METRICS_* environment variables; flags override them.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from aggregator import logs, migrate
from aggregator.backfill import Backfill, BackfillOptions
from aggregator.daemon import Daemon, describe
from aggregator.db import (
    DatabaseError,
    check_connect,
    first_line,
    require_source_tables,
    rollup_engine,
    source_engine,
)
from aggregator.engine import Aggregator
from aggregator.progress import ProgressBar
from aggregator.settings import ConfigError, Settings, from_env, redact
from aggregator.testdata import GenerateOptions, generate
from aggregator.timeutil import utcnow

PROG = "dashboard-metrics"
log = logging.getLogger("dashboard_metrics.cli")


class CommandError(RuntimeError):
    """A one-line failure reported to the user with a non-zero exit."""


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _non_negative(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}")
    return number


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 timestamp, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _database_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("databases (override DASHBOARD_METRICS_* variables)")
    group.add_argument(
        "--database-url", help="rollup database (default: SQLite under the data dir)"
    )
    group.add_argument("--source-database-url", help="Unstract source database (default: same)")
    group.add_argument("--source-schema", help="source schema (default 'unstract' on PostgreSQL)")
    group.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")


def _http_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("HTTP service")
    group.add_argument("--host", help="bind address (default 127.0.0.1)")
    group.add_argument("--port", type=_positive, help="port (default 8080)")
    group.add_argument("--redis-url", help="Redis for the cache (default: in-process cache)")
    group.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="serve a non-loopback address without DASHBOARD_METRICS_API_KEYS",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _database_flags(sub)
        return sub

    up = command(
        "up",
        "embedded all-in-one: SQLite + in-process cache under "
        "./.dashboard-metrics/, demo data on first start, migrate, backfill, "
        "the aggregator loop and the HTTP service in one process",
    )
    _http_flags(up)
    up.add_argument("--tick-seconds", type=float, help="aggregator tick interval (default 60)")

    serve = command("serve", "the HTTP service: JSON API, /metrics, /healthz and /readyz")
    _http_flags(serve)

    aggregate = command("aggregate", "the aggregator daemon (ticks, reconciliation, retention)")
    aggregate.add_argument("--once", action="store_true", help="run one tick and exit")
    aggregate.add_argument(
        "--reconcile",
        action="store_true",
        help="with --once: also reconcile the last RECONCILE_DAYS days",
    )
    aggregate.add_argument("--tick-seconds", type=float, help="tick interval (default 60)")
    aggregate.add_argument(
        "--health-port",
        type=int,
        help="serve /healthz and /readyz for probes on this port (default off)",
    )

    backfill = command("backfill", "recompute whole UTC days and whole months from the source")
    backfill.add_argument(
        "--days",
        type=_positive,
        default=30,
        help="UTC days back from today to recompute (default 30)",
    )
    backfill.add_argument("--org-id", help="only this organization (string id, e.g. org_abc123)")
    backfill.add_argument(
        "--dry-run", action="store_true", help="print per tier what would be written; write nothing"
    )
    backfill.add_argument("--skip-hourly", action="store_true", help="do not write hourly rows")
    backfill.add_argument("--skip-daily", action="store_true", help="do not write daily rows")
    backfill.add_argument("--skip-monthly", action="store_true", help="do not write monthly rows")

    cleanup = command("cleanup", "apply retention now: delete rows older than the retention")
    cleanup.add_argument("--tier", choices=("hourly", "daily"), required=True)
    cleanup.add_argument(
        "--retention-days",
        type=_positive,
        help="default: HOURLY_RETENTION_DAYS (30) or DAILY_RETENTION_DAYS (365)",
    )

    command("migrate", "create or upgrade the rollup schema")

    gen = command(
        "generate-test-data",
        "create the Unstract-shaped source tables if absent and fill them (this WRITES to the "
        "source database: for the embedded demo, tests and benchmarks, never a production one)",
    )
    gen.add_argument("--org-id", help="generate for this one organization (string id)")
    gen.add_argument("--orgs", type=_positive, default=3, help="organizations (default 3)")
    gen.add_argument("--days", type=_positive, default=7, help="days up to now (default 7)")
    gen.add_argument(
        "--records-per-day",
        type=_positive,
        default=15,
        help="workflow executions per organization per day (default 15)",
    )
    gen.add_argument(
        "--clean", action="store_true", help="delete these organizations' source rows first"
    )
    gen.add_argument("--seed", type=_non_negative, default=42, help="random seed (default 42)")
    gen.add_argument("--until", type=_timestamp, help="end of the generated range (default now)")

    dashboards = command("dashboards", "write the Grafana dashboards and Prometheus rules")
    dashboards.add_argument("--out", help="output directory (default dashboards/generated)")
    dashboards.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the files on disk differ from what would be written",
    )

    command("doctor", "check connectivity, source schema, recommended indexes, aggregator lag")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name, None)
        for name in (
            "database_url",
            "source_database_url",
            "source_schema",
            "log_level",
            "host",
            "port",
            "redis_url",
            "allow_unauthenticated",
            "tick_seconds",
            "health_port",
        )
    }
    return from_env().with_overrides(**overrides)


# -- commands --------------------------------------------------------------------------------


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    engine = rollup_engine(settings)
    check_connect(engine, "rollup")
    migrate.upgrade(engine)
    print(
        f"rollup schema at revision {migrate.current_revision(engine)} "
        f"({redact(settings.rollup_url)})"
    )
    return 0


def _aggregator(settings: Settings) -> Aggregator:
    rollup = rollup_engine(settings)
    check_connect(rollup, "rollup")
    if migrate.current_revision(rollup) != migrate.head_revision():
        raise CommandError("the rollup schema is not up to date: run `dashboard-metrics migrate`")
    source = source_engine(settings)
    require_source_tables(source, settings)
    return Aggregator(settings, rollup, source)


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.info("stopping", extra={"fields": {"signal": signal.Signals(signum).name}})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_aggregate(settings: Settings, args: argparse.Namespace) -> int:
    aggregator = _aggregator(settings)
    if args.once:
        result = aggregator.tick(reconcile=True if args.reconcile else None)
        print(json.dumps(result.as_dict()))
        return 0
    stop = threading.Event()
    _stop_on_signals(stop)
    log.info("aggregator starting", extra={"fields": describe(settings)})
    daemon = Daemon(aggregator, stop)
    server = None
    if settings.health_port:
        from aggregator import healthserver

        server = healthserver.start(daemon, settings.host, settings.health_port)
    try:
        daemon.run()
    finally:
        if server is not None:
            server.shutdown()
    return 0


def run_backfill(aggregator: Aggregator, options: BackfillOptions, quiet: bool = False) -> Any:
    job = Backfill(aggregator, options)
    bar = None if quiet else ProgressBar(job.steps(), "backfill")
    return job.run(bar)


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    if args.skip_hourly and args.skip_daily and args.skip_monthly:
        raise CommandError(
            "--skip-hourly, --skip-daily and --skip-monthly together skip everything"
        )
    if args.skip_daily and not args.skip_monthly:
        print(
            "note: --skip-daily leaves daily rows as they are; monthly rows are still computed "
            "from the source, so they are whole",
            file=sys.stderr,
        )
    aggregator = _aggregator(settings)
    options = BackfillOptions(
        days=args.days,
        organization_id=args.org_id,
        dry_run=args.dry_run,
        skip_hourly=args.skip_hourly,
        skip_daily=args.skip_daily,
        skip_monthly=args.skip_monthly,
    )
    report = run_backfill(aggregator, options)
    verb = "would write" if report.dry_run else "wrote"
    print(
        f"backfill {report.start} .. {report.end} (months {', '.join(report.months)})"
        + (f" for {args.org_id}" if args.org_id else "")
    )
    for tier, figures in report.tiers.items():
        summary = f"{figures.rows} rows, {verb} {figures.written}"
        print(f"  {tier:8} {'skipped' if getattr(args, f'skip_{tier}') else summary}")
    return 0


def cmd_cleanup(settings: Settings, args: argparse.Namespace) -> int:
    aggregator = _aggregator(settings)
    deleted = aggregator.cleanup(args.tier, args.retention_days)
    days = args.retention_days or getattr(settings, f"{args.tier}_retention_days")
    print(f"deleted {deleted} {args.tier} rows older than {days} days")
    return 0


def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    source = source_engine(settings)
    check_connect(source, "source")
    options = GenerateOptions(
        organization_id=args.org_id,
        orgs=args.orgs,
        days=args.days,
        records_per_day=args.records_per_day,
        clean=args.clean,
        seed=args.seed,
        until=args.until,
    )
    bar = ProgressBar(options.days, "generate")
    report = generate(source, settings.effective_source_schema, options, utcnow(), bar)
    print(f"organizations: {', '.join(report.organizations)}")
    for table, count in sorted(report.rows.items()):
        print(f"  {table:24} {count} rows")
    return 0


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from aggregator.doctor import run_doctor

    return run_doctor(settings)


def cmd_dashboards(settings: Settings, args: argparse.Namespace) -> int:
    from dashboards.generate import main as generate_dashboards

    return generate_dashboards(args.out, check=args.check)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from exporter.serve import serve

    return serve(settings)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from exporter.serve import up

    return up(settings)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "up": cmd_up,
    "serve": cmd_serve,
    "aggregate": cmd_aggregate,
    "backfill": cmd_backfill,
    "cleanup": cmd_cleanup,
    "migrate": cmd_migrate,
    "generate-test-data": cmd_generate,
    "dashboards": cmd_dashboards,
    "doctor": cmd_doctor,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
        logs.setup(settings.log_level)
        return COMMANDS[args.command](settings, args)
    except (ConfigError, DatabaseError, CommandError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except SQLAlchemyError as exc:
        print(f"{PROG}: error: database: {first_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
