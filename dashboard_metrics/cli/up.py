"""`dashboard-metrics up`: everything in one process on the embedded default, with a short
summary for people: what is loaded, the organizations, and URLs ready to paste."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from dashboard_metrics.aggregator.backfill import Backfill, BackfillOptions
from dashboard_metrics.aggregator.daemon import Daemon
from dashboard_metrics.aggregator.engine import Aggregator
from dashboard_metrics.aggregator.progress import ProgressBar
from dashboard_metrics.aggregator.testdata import GenerateOptions, generate
from dashboard_metrics.cli import http, organizations
from dashboard_metrics.core import migrate, state
from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.db import (
    check_connect,
    missing_source_tables,
    rollup_engine,
    source_engine,
    sqlite_file,
)
from dashboard_metrics.core.setting_types import mask_url
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import utcnow
from dashboard_metrics.exporter.app import create_app
from dashboard_metrics.exporter.serve import check_bind

DEMO = GenerateOptions(orgs=3, days=30, records_per_day=20, seed=42)


@dataclass
class Loaded:
    executions: int
    llm_calls: int
    first: date | None
    last: date | None

    def line(self) -> str:
        span = f", {self.first} .. {self.last}" if self.first else ""
        return f"{self.executions:,} workflow executions and {self.llm_calls:,} LLM calls{span}"


def loaded(source: Engine) -> Loaded:
    we, usage = st.workflow_execution, st.usage
    with source.connect() as conn:
        count, first, last = conn.execute(
            select(func.count(), func.min(we.c.created_at), func.max(we.c.created_at))
        ).one()
        calls = conn.execute(
            select(func.count()).select_from(usage).where(usage.c.usage_type == "llm")
        ).scalar_one()
    return Loaded(
        int(count),
        int(calls),
        first.date() if first else None,
        last.date() if last else None,
    )


def _fresh(source: Engine, schema: str | None) -> bool:
    if missing_source_tables(source, schema):
        return True
    with source.connect() as conn:
        return not conn.execute(select(func.count()).select_from(st.organization)).scalar()


def summary(settings: Settings, source: Engine) -> list[str]:
    base = http.base_url(settings)
    orgs = organizations.in_source(source)
    first = next(iter(orgs), "ORG_ID")
    lines = [f"loaded: {loaded(source).line()}"]
    lines.append(f"organizations ({len(orgs)}):")
    lines += [f"  {org}  {name}" for org, name in orgs.items()]
    lines += [
        f"dashboard-metrics is up on {base} (Ctrl-C stops it):",
        f"  browser   {base}/",
        f"  API       {base}/api/v1/unstract/{first}/metrics/overview/",
        f"  OpenAPI   {base}/api/openapi.json",
        f"  metrics   {base}/metrics",
        f"  health    {base}/readyz",
        "  terminal  dashboard-metrics report",
        "for the README's API examples:",
        f"  export ORG={first}",
    ]
    return lines


def up(settings: Settings) -> int:
    """Bind first, then fill and catch up, then serve; say "up" once it accepts connections."""
    check_bind(settings)
    sock = http.listen(settings)
    rollup = rollup_engine(settings)
    source = source_engine(settings)
    check_connect(rollup, "rollup")
    where = sqlite_file(settings.rollup_url)
    print(f"data: {where.resolve() if where else mask_url(settings.rollup_url)}", flush=True)
    schema = settings.effective_source_schema
    fresh = _fresh(source, schema)
    if fresh:
        print(f"generating demo data: {DEMO.orgs} organizations, {DEMO.days} days ...", flush=True)
        generate(source, schema, DEMO, utcnow(), ProgressBar(DEMO.days, "generate"))
    migrate.upgrade(rollup)
    aggregator = Aggregator(settings, rollup, source)
    with rollup.connect() as conn:
        first_start = state.get(conn, state.LAST_TICK) is None
    if first_start or fresh:
        job = Backfill(aggregator, BackfillOptions(days=DEMO.days))
        result = job.run(ProgressBar(job.steps(), "rollups"))
        rows = ", ".join(f"{r.rows:,} {tier}" for tier, r in result.tiers.items())
        print(f"rolled up {result.start} .. {result.end}: {rows} rows", flush=True)
    stop = threading.Event()
    thread = Daemon(aggregator, stop).run_in_thread()
    app = create_app(settings, rollup=rollup_engine(settings, writer=False))
    lines = summary(settings, source)
    try:
        http.run(app, sock, lambda: print("\n".join(lines), flush=True))
    finally:
        stop.set()
        thread.join(timeout=30)
        source.dispose()
    return 0
