"""Backfill: recompute whole UTC days and whole months from the source tables.

Each month is one locked transaction over one source snapshot, so backfill runs safely beside
the daemon: every bucket it writes equals the source at that snapshot, and a monthly row is
always a whole month (the part of the month outside the window is read from the source too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.engine import Connection

from aggregator import sourcesql, state, store, totals
from aggregator.engine import Aggregator, source_snapshot
from aggregator.recompute import Coverage, as_time_ranges, day_ranges
from aggregator.rollup_tables import DAILY, HOURLY, MONTHLY, Granularity, Tier
from aggregator.timeutil import DAY, day_start, days_between, month_of, next_month
from aggregator.values import Rollup, add_into, as_datetime

log = logging.getLogger("dashboard_metrics.backfill")

Progress = Callable[[int, str], None]


@dataclass
class BackfillOptions:
    days: int = 30
    organization_id: str | None = None
    dry_run: bool = False
    skip_hourly: bool = False
    skip_daily: bool = False
    skip_monthly: bool = False


@dataclass
class TierReport:
    rows: int = 0  # rows the window holds after the backfill
    written: int = 0  # rows inserted, updated or deleted (would be, on a dry run)


@dataclass
class BackfillReport:
    start: date
    end: date
    months: list[str] = field(default_factory=list)
    tiers: dict[str, TierReport] = field(
        default_factory=lambda: {t: TierReport() for t in ("hourly", "daily", "monthly")}
    )
    dry_run: bool = False


def month_steps(start: date, end: date) -> list[tuple[date, list[date]]]:
    """Months touching [start, end], each with its window days."""
    steps: list[tuple[date, list[date]]] = []
    for day in days_between(start, end + DAY):
        month = month_of(day)
        if not steps or steps[-1][0] != month:
            steps.append((month, []))
        steps[-1][1].append(day)
    return steps


class Backfill:
    def __init__(self, aggregator: Aggregator, options: BackfillOptions) -> None:
        self.aggregator = aggregator
        self.options = options

    def plan(self) -> tuple[datetime, list[tuple[date, list[date]]]]:
        now = self.aggregator.clock()
        start = (now - timedelta(days=self.options.days)).date()
        return now, month_steps(start, now.date())

    def steps(self) -> int:
        _, months = self.plan()
        return sum(len(days) + 1 for _, days in months)

    def run(self, progress: Progress | None = None) -> BackfillReport:
        now, months = self.plan()
        report = BackfillReport(start=months[0][1][0], end=now.date(), dry_run=self.options.dry_run)
        for month, days in months:
            report.months.append(month.strftime("%Y-%m"))
            self._month(now, month, days, report, progress)
        log.info(
            "backfill",
            extra={
                "fields": {
                    "start": report.start.isoformat(),
                    "end": report.end.isoformat(),
                    "organization_id": self.options.organization_id,
                    "dry_run": self.options.dry_run,
                    "tiers": {k: vars(v) for k, v in report.tiers.items()},
                }
            },
        )
        return report

    def _write(
        self,
        conn: Connection,
        tier: Tier,
        ranges: list[tuple[object, object]],
        new: Rollup,
        stamp: datetime,
        report: TierReport,
    ) -> int:
        old = store.read(conn, tier, ranges, self.options.organization_id)
        report.rows += len(new)
        if self.options.dry_run:
            changed = sum(1 for k, v in new.items() if not v.same_as(old.get(k)))
            gone = sum(1 for k in old if k not in new)
            report.written += changed + gone
            return 0
        written = store.merge(conn, tier, old, new, stamp)
        report.written += written
        return written

    def _month(
        self,
        now: datetime,
        month: date,
        days: list[date],
        report: BackfillReport,
        progress: Progress | None,
    ) -> None:
        org = self.options.organization_id
        agg = self.aggregator
        with agg.rollup.begin() as conn:
            state.take_write_lock(conn)
            coverage: Coverage = agg.coverage(conn, now)
            written = 0
            month_total: Rollup = {}
            with source_snapshot(agg.source) as source:
                for day in days:
                    hours = sourcesql.compute(
                        source, Granularity.HOUR, [(day_start(day), day_start(day + DAY))], org
                    )
                    day_total: Rollup = {}
                    for key, value in hours.items():
                        add_into(day_total, key._replace(period=day), value)
                        add_into(month_total, key._replace(period=month), value)
                    if not self.options.skip_hourly:
                        covered = {
                            k: v
                            for k, v in hours.items()
                            if coverage.hour_covered(as_datetime(k.period))
                        }
                        start = max(day_start(day), coverage.hourly_from)
                        if start < day_start(day + DAY):
                            written += self._write(
                                conn,
                                HOURLY,
                                [(start, day_start(day + DAY))],
                                covered,
                                now,
                                report.tiers["hourly"],
                            )
                    if not self.options.skip_daily and coverage.day_covered(day):
                        written += self._write(
                            conn, DAILY, [(day, day + DAY)], day_total, now, report.tiers["daily"]
                        )
                    if progress:
                        progress(1, day.isoformat())
                if not self.options.skip_monthly:
                    outside = [
                        r
                        for r in day_ranges(
                            d for d in days_between(month, next_month(month)) if d not in days
                        )
                    ]
                    rest = sourcesql.compute(
                        source, Granularity.MONTH, as_time_ranges(outside), org
                    )
                    for key, value in rest.items():
                        add_into(month_total, key, value)
                    written += self._write(
                        conn,
                        MONTHLY,
                        [(month, next_month(month))],
                        month_total,
                        now,
                        report.tiers["monthly"],
                    )
            if progress:
                progress(1, month.strftime("%Y-%m"))
            if self.options.dry_run:
                return  # nothing was written
            updates: dict[str, object] = {}
            untrusted = set(state.get(conn, state.HOURLY_UNTRUSTED) or [])
            if self.options.skip_hourly:
                # The hourly tier of these days was not brought up to date: ticks must not derive
                # day and month differences from it.
                updates[state.HOURLY_UNTRUSTED] = sorted(
                    untrusted | {d.isoformat() for d in days if d >= coverage.hourly_from.date()}
                )
            elif org is None and untrusted:
                # Every organization's hours of these days were rewritten: trusted again.
                updates[state.HOURLY_UNTRUSTED] = sorted(untrusted - {d.isoformat() for d in days})
            if written:
                totals.refresh_totals(conn, now)
                updates[state.GENERATION] = state.generation(conn) + 1
            if updates:
                state.put(conn, updates, now)
