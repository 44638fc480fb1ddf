"""The commands behind `dashboard-metrics <command>` (parsing lives in `parser`)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy.exc import IntegrityError

from dashboard_metrics.aggregator.backfill import Backfill, BackfillOptions
from dashboard_metrics.aggregator.daemon import Daemon, describe
from dashboard_metrics.aggregator.engine import Aggregator, TickResult
from dashboard_metrics.aggregator.progress import ProgressBar
from dashboard_metrics.aggregator.testdata import GenerateOptions, GenerateReport, generate
from dashboard_metrics.cli import organizations
from dashboard_metrics.cli.embedded import require_existing
from dashboard_metrics.cli.errors import CommandError
from dashboard_metrics.core import migrate
from dashboard_metrics.core.coverage import RETENTION
from dashboard_metrics.core.db import (
    check_connect,
    require_source_tables,
    rollup_engine,
    source_engine,
    sqlite_file,
)
from dashboard_metrics.core.schema import FAMILIES
from dashboard_metrics.core.setting_types import mask_url
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.state import request_recompute
from dashboard_metrics.core.timeutil import utcnow

log = logging.getLogger("dashboard_metrics.cli")


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    engine = rollup_engine(settings)
    check_connect(engine, "rollup")
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    after = migrate.current_revision(engine)
    path = sqlite_file(settings.rollup_url)
    where = str(path.resolve()) if path else mask_url(settings.rollup_url)
    if before == after:
        print(f"rollup schema is up to date ({where})")
    else:
        print(f"rollup schema {'upgraded' if before else 'created'} ({where})")
    return 0


def aggregator_for(settings: Settings) -> Aggregator:
    require_existing(settings)
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


def describe_tick(result: TickResult) -> str:
    written = ", ".join(f"{n} {tier}" for tier, n in result.written.items() if n) or "nothing"
    extra = ""
    if result.reconciled:
        extra += "; reconciled"
    cleaned = ", ".join(f"{n} {tier}" for tier, n in result.cleaned.items() if n)
    if cleaned:
        extra += f"; cleaned {cleaned} rows"
    return (
        f"tick: {result.dirty_hours} changed hours recomputed, rows written: {written}"
        f"{extra} ({result.duration_seconds:.2f} s)"
    )


def cmd_aggregate(settings: Settings, args: argparse.Namespace) -> int:
    aggregator = aggregator_for(settings)
    if args.once:
        result = aggregator.tick(reconcile=True if args.reconcile else None)
        print(json.dumps(result.as_dict()) if args.json else describe_tick(result))
        return 0
    if args.json or args.reconcile:
        raise CommandError("--json and --reconcile go with --once")
    stop = threading.Event()
    _stop_on_signals(stop)
    log.info("aggregator starting", extra={"fields": describe(settings)})
    daemon = Daemon(aggregator, stop)
    server = None
    if settings.health_port:
        from dashboard_metrics.aggregator import healthserver

        try:
            server = healthserver.start(daemon, settings.host, settings.health_port)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {settings.host}:{settings.health_port} ({exc.strerror}): "
                "choose another --health-port (DASHBOARD_METRICS_HEALTH_PORT)"
            ) from None
    try:
        daemon.run()
    finally:
        if server is not None:
            server.shutdown()
    return 0


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
    aggregator = aggregator_for(settings)
    if args.org_id:
        organizations.require(aggregator.rollup, aggregator.source, args.org_id)
    options = BackfillOptions(
        days=args.days,
        organization_id=args.org_id,
        dry_run=args.dry_run,
        skip_hourly=args.skip_hourly,
        skip_daily=args.skip_daily,
        skip_monthly=args.skip_monthly,
    )
    job = Backfill(aggregator, options)
    report = job.run(ProgressBar(job.steps(), "backfill"))
    verb = "would write" if report.dry_run else "wrote"
    print(
        f"backfill {report.start} .. {report.end} (months {', '.join(report.months)})"
        + (f" for {args.org_id}" if args.org_id else "")
    )
    tier_of = {t.table.name: t.name for family in FAMILIES for t in family.tiers}
    for table, figures in report.tiers.items():
        summary = f"{figures.rows} rows, {verb} {figures.written}"
        skipped = getattr(args, f"skip_{tier_of[table]}")
        print(f"  {table:32} {'skipped' if skipped else summary}")
    return 0


def cmd_cleanup(settings: Settings, args: argparse.Namespace) -> int:
    aggregator = aggregator_for(settings)
    deleted = aggregator.cleanup(args.tier, args.retention_days)
    days = args.retention_days or RETENTION[args.tier].days(settings)
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
    try:
        report = generate(source, settings.effective_source_schema, options, utcnow(), bar)
    except (IntegrityError, psycopg.IntegrityError):
        # One transaction: nothing was written. Same seed, same ids: this data is there.
        bar.close()  # end the progress bar's line
        print(
            f"source data for --seed {args.seed} is already there; nothing written "
            "(--clean regenerates it, another --seed adds more)"
        )
        return 0
    print(f"organizations: {', '.join(report.organizations)}")
    for table, count in sorted(report.rows.items()):
        print(f"  {table:24} {count} rows")
    if _announce(settings, report):
        print("the aggregator recomputes these days on its next tick (no backfill needed)")
    return 0


def _announce(settings: Settings, report: GenerateReport) -> bool:
    """The generated rows carry past modified_at values, which no watermark sees: tell the
    aggregator to recompute their range. Nothing to tell before the rollups exist."""
    path = sqlite_file(settings.rollup_url)
    if path is not None and not path.exists():
        return False
    rollup = rollup_engine(settings)
    try:
        return request_recompute(rollup, report.start, report.end, utcnow())
    finally:
        rollup.dispose()


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from dashboard_metrics.aggregator.doctor import run_doctor

    return run_doctor(settings)


def cmd_dashboards(settings: Settings, args: argparse.Namespace) -> int:
    from dashboard_metrics.dashboards.generate import main as generate_dashboards

    return generate_dashboards(args.out, check=args.check, runbook_base=args.runbook_base_url)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from dashboard_metrics.cli.http import serve

    return serve(settings)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from dashboard_metrics.cli.up import up

    return up(settings)


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from dashboard_metrics.cli.report import run_report

    require_existing(settings)
    return run_report(settings, args.org_id, args.days, as_json=args.json)


def cmd_push(settings: Settings, args: argparse.Namespace) -> int:
    from dashboard_metrics.cli.push import run_push

    return run_push(settings, args)


RUN: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "up": cmd_up,
    "serve": cmd_serve,
    "aggregate": cmd_aggregate,
    "backfill": cmd_backfill,
    "cleanup": cmd_cleanup,
    "migrate": cmd_migrate,
    "generate-test-data": cmd_generate,
    "dashboards": cmd_dashboards,
    "doctor": cmd_doctor,
    "report": cmd_report,
    "push": cmd_push,
}
