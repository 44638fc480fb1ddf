"""Running the HTTP service (`serve`) and the embedded all-in-one (`up`)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading

from aiohttp import web
from sqlalchemy import func, select

from aggregator import migrate, state
from aggregator import source_tables as st
from aggregator.backfill import Backfill, BackfillOptions
from aggregator.daemon import Daemon
from aggregator.db import check_connect, missing_source_tables, rollup_engine, source_engine
from aggregator.engine import Aggregator
from aggregator.progress import ProgressBar
from aggregator.settings import ConfigError, Settings
from aggregator.testdata import GenerateOptions, generate
from aggregator.timeutil import utcnow
from exporter.app import create_app

log = logging.getLogger("dashboard_metrics.serve")

DEMO = GenerateOptions(orgs=3, days=30, records_per_day=20, seed=42)


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


def check_bind(settings: Settings) -> None:
    """Without API keys the JSON API is open: only loopback, unless explicitly allowed."""
    if settings.api_keys or settings.allow_unauthenticated or is_loopback(settings.host):
        return
    raise ConfigError(
        f"refusing to serve {settings.host} without DASHBOARD_METRICS_API_KEYS; set keys, bind "
        "127.0.0.1, or pass --allow-unauthenticated (DASHBOARD_METRICS_ALLOW_UNAUTHENTICATED=1)"
    )


def urls(settings: Settings) -> list[str]:
    base = f"http://{settings.host}:{settings.port}"
    return [
        f"{base}/healthz",
        f"{base}/readyz",
        f"{base}/metrics",
        f"{base}/api/openapi.json",
        f"{base}/api/v1/unstract/<org_id>/metrics/summary/",
    ]


def serve(settings: Settings) -> int:
    check_bind(settings)
    app = create_app(settings)
    print(f"serving on http://{settings.host}:{settings.port}", flush=True)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    return 0


def up(settings: Settings) -> int:
    """Everything in one process on the embedded default."""
    check_bind(settings)
    rollup = rollup_engine(settings)
    source = source_engine(settings)
    check_connect(rollup, "rollup")
    schema = settings.effective_source_schema
    fresh = bool(missing_source_tables(source, schema))
    if not fresh:
        with source.connect() as conn:
            fresh = not conn.execute(select(func.count()).select_from(st.organization)).scalar()
    if fresh:
        print("generating demo data: 3 organizations, 30 days ...", flush=True)
        report = generate(source, schema, DEMO, utcnow(), ProgressBar(DEMO.days, "generate"))
        print(f"  organizations: {', '.join(report.organizations)}", flush=True)
    migrate.upgrade(rollup)
    print(f"rollup schema at revision {migrate.current_revision(rollup)}", flush=True)
    aggregator = Aggregator(settings, rollup, source)
    with rollup.connect() as conn:
        first_start = state.get(conn, state.LAST_TICK) is None
    if first_start or fresh:
        job = Backfill(aggregator, BackfillOptions(days=30))
        result = job.run(ProgressBar(job.steps(), "backfill"))
        written = {tier: r.written for tier, r in result.tiers.items()}
        print(f"backfilled {result.start} .. {result.end}: {written}", flush=True)
    stop = threading.Event()
    daemon = Daemon(aggregator, stop)
    thread = daemon.run_in_thread()
    app = create_app(settings, rollup=rollup_engine(settings, writer=False))
    print("dashboard-metrics is up (Ctrl-C stops it):", flush=True)
    for url in urls(settings):
        print(f"  {url}", flush=True)
    try:
        web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    finally:
        stop.set()
        thread.join(timeout=30)
    return 0
