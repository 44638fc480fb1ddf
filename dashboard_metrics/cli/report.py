"""`dashboard-metrics report`: the numbers in a terminal, per organization: each metric's total
over the range, a daily sparkline, the top cost days, and the top models by cost and workflows
by documents (from the breakdown tiers, `report_breakdown.py`).

The numbers come from the rollups through the API's own path (the overview endpoint's plan,
tier reads and shaping), so the terminal and the API never disagree.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dashboard_metrics.cli import organizations, report_breakdown
from dashboard_metrics.cli.errors import CommandError
from dashboard_metrics.core import migrate
from dashboard_metrics.core.catalogue import METRICS
from dashboard_metrics.core.db import check_connect, rollup_engine, source_engine
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import day_start, utcnow
from dashboard_metrics.exporter.api import shape
from dashboard_metrics.exporter.api.context import Api
from dashboard_metrics.exporter.api.errors import ApiError
from dashboard_metrics.exporter.api.params import MetricFilter, parse_range
from dashboard_metrics.exporter.api.rollup_views import _cells
from dashboard_metrics.exporter.auth import Authenticator
from dashboard_metrics.exporter.cache import ResilientCache, make_backend
from dashboard_metrics.exporter.stats import ServiceStats

BLOCKS = "▁▂▃▄▅▆▇█"
COST_METRIC = "llm_usage"
TOP_DAYS = 3


def sparkline(values: list[float]) -> str:
    """One block per value, scaled to the largest; a day without events is a space."""
    top = max(values, default=0.0)
    if top <= 0:
        return " " * len(values)
    return "".join(
        " " if v <= 0 else BLOCKS[min(len(BLOCKS) - 1, int(v / top * (len(BLOCKS) - 1) + 0.5))]
        for v in values
    )


def amount(metric: str, value: float) -> str:
    if METRICS[metric].unit == "USD":
        return f"${value:,.4f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


@dataclass
class OrgReport:
    organization_id: str
    name: str
    totals: dict[str, tuple[float, int]]  # metric -> (value, events)
    daily: dict[str, list[float]]  # metric -> one value per day of the range
    top_cost_days: list[tuple[date, float]] = field(default_factory=list)
    # report_breakdown.TOPS key -> entries, the largest first
    breakdowns: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class Report:
    start: datetime
    end: datetime
    days: list[date]
    source: str
    organizations: list[OrgReport]

    def as_dict(self) -> dict[str, Any]:
        return {
            "start_date": self.start.isoformat(),
            "end_date": self.end.isoformat(),
            "source": self.source,
            "days": [d.isoformat() for d in self.days],
            "organizations": [
                {
                    "organization_id": org.organization_id,
                    "name": org.name,
                    "totals": {
                        name: {"value": value, "count": count}
                        for name, (value, count) in org.totals.items()
                    },
                    "daily": org.daily,
                    "top_cost_days": [
                        {"date": day.isoformat(), "cost": cost} for day, cost in org.top_cost_days
                    ],
                    "breakdowns": org.breakdowns,
                }
                for org in self.organizations
            ],
        }

    def text(self) -> str:
        lines: list[str] = []
        span = f"{self.days[0]} .. {self.days[-1]}"
        width = max(len(name) for name in METRICS)
        for org in self.organizations:
            title = org.organization_id + (f"  {org.name}" if org.name else "")
            lines += [
                title,
                f"  {span} (UTC, {len(self.days)} days up to {self.end:%H:%M}; "
                f"{self.source} rollups)",
                f"  {'metric':<{width}} {'total':>14} {'events':>9}  daily",
            ]
            for name, (value, count) in org.totals.items():
                lines.append(
                    f"  {name:<{width}} {amount(name, value):>14} {count:>9,}  "
                    f"{sparkline(org.daily[name])}"
                )
            top = " · ".join(f"{day} {amount(COST_METRIC, c)}" for day, c in org.top_cost_days)
            lines += [
                f"  top cost days: {top or 'none'}",
                *report_breakdown.text_lines(org.breakdowns),
                "",
            ]
        if not self.organizations:
            lines.append("no organizations in the rollups yet (run `aggregate` or `backfill`)")
        return "\n".join(lines).rstrip() + "\n"


def _org_report(org: str, name: str, cells: list[Any], days: list[date]) -> OrgReport:
    totals_list, trend = shape.overview(cells, UTC)
    found = {t["metric_name"]: (t["total_value"], t["total_count"]) for t in totals_list}
    by_day = {date.fromisoformat(t["date"]): t["metrics"] for t in trend}
    totals = {metric: found.get(metric, (0.0, 0)) for metric in METRICS}
    daily = {metric: [by_day.get(d, {}).get(metric, 0.0) for d in days] for metric in METRICS}
    costs = [(d, c) for d, c in zip(days, daily[COST_METRIC], strict=True) if c > 0]
    costs.sort(key=lambda item: (-item[1], item[0]))
    return OrgReport(org, name, totals, daily, costs[:TOP_DAYS])


async def _gather(api: Api, orgs: dict[str, str], days_back: int, now: datetime) -> Report:
    first_day = now.date() - timedelta(days=days_back - 1)
    query = {"start_date": day_start(first_day).isoformat(), "end_date": now.isoformat()}
    try:
        rng = parse_range(query, now, days_back)
        plan = await api.plan(rng, "auto", "day", now)
    except ApiError as exc:
        raise CommandError(f"--days {days_back}: {exc.detail}") from None
    days = [first_day + timedelta(days=i) for i in range(days_back)]
    everyone = []
    for org, name in orgs.items():
        cells = await _cells(api, org, MetricFilter(None, None, None), plan, refresh=True)
        report = _org_report(org, name, cells, days)
        report.breakdowns = report_breakdown.gather(api.reader, api.source, org, plan)
        everyone.append(report)
    return Report(rng.start, rng.end, days, plan.source, everyone)


def build(settings: Settings, org: str | None, days_back: int, now: datetime) -> Report:
    rollup = rollup_engine(settings, writer=False)
    source = source_engine(settings, interactive=True)
    try:
        check_connect(rollup, "rollup")
        if migrate.current_revision(rollup) != migrate.head_revision():
            raise CommandError(
                "the rollup schema is not up to date: run `dashboard-metrics migrate`"
            )
        names = organizations.in_source(source)
        if org is not None:
            organizations.require(rollup, source, org)
            chosen = [org]
        else:
            chosen = organizations.in_rollups(rollup)
        cache = ResilientCache(make_backend(""), ServiceStats(), enabled=False)
        api = Api(settings, lambda: now, rollup, source, cache, Authenticator([]))
        orgs = {o: names.get(o, "") for o in chosen}
        return asyncio.run(_gather(api, orgs, days_back, now))
    finally:
        rollup.dispose()
        source.dispose()


def run_report(settings: Settings, org: str | None, days_back: int, *, as_json: bool) -> int:
    report = build(settings, org, days_back, utcnow())
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.text(), end="")
    return 0
