"""Backfill: recompute whole UTC days and whole months from the source tables.

Each month is one locked transaction over one source snapshot, so backfill runs safely beside
the daemon: every bucket it writes equals the source at that snapshot, and a monthly row is
always a whole month (the part of the month outside the window is read from the source too).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from dashboard_metrics.aggregator import store, totals
from dashboard_metrics.aggregator.engine import Aggregator, source_snapshot
from dashboard_metrics.aggregator.progress import Progress
from dashboard_metrics.aggregator.recompute import as_time_ranges, day_ranges
from dashboard_metrics.core import sourcesql, state
from dashboard_metrics.core.catalogue import BUILTIN
from dashboard_metrics.core.coverage import Coverage
from dashboard_metrics.core.schema import FAMILIES, Family, Granularity, Tier
from dashboard_metrics.core.timeutil import DAY, day_start, days_between, month_of, next_month
from dashboard_metrics.core.values import RawRow, Rollup, RowSums, as_rollup, without_dims

log = logging.getLogger("dashboard_metrics.backfill")


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
    # Per table: the organization tiers and the breakdown tiers.
    tiers: dict[str, TierReport] = field(
        default_factory=lambda: {t.table.name: TierReport() for f in FAMILIES for t in f.tiers}
    )
    dry_run: bool = False


PerFamily = list[list[RawRow]]  # rows of each family, in FAMILIES order

# Metrics whose organization rows are the sums of their breakdown rows (the breakdown queries
# read the same events, outer-joined to their dimensions); the others need their own query.
_UNDIMENSIONED = [entry.name for entry in BUILTIN if not entry.dimensions]


def _read(source: Connection, granularity: Granularity, spans: Any, org: str | None) -> PerFamily:
    """Both families' rows: the breakdowns from the source, the organization rows added up
    from them (one source read instead of two)."""
    breakdown = list(sourcesql.compute_rows(source, granularity, spans, org, breakdown=True))
    organization = without_dims(breakdown)
    if _UNDIMENSIONED:
        rows = sourcesql.compute_rows(source, granularity, spans, org, _UNDIMENSIONED)
        organization.extend(rows)
    by_family = {False: organization, True: breakdown}
    return [by_family[family.hourly.is_breakdown] for family in FAMILIES]


def _read_hours(source: Connection, day: date, org: str | None) -> PerFamily:
    return _read(source, Granularity.HOUR, [(day_start(day), day_start(day + DAY))], org)


def _read_months(source: Connection, ranges: list[tuple[date, date]], org: str | None) -> PerFamily:
    return _read(source, Granularity.MONTH, as_time_ranges(ranges), org)


def _prefetched(
    reader: ThreadPoolExecutor, source: Connection, days: list[date], org: str | None
) -> Iterator[tuple[date, PerFamily]]:
    """Each day with its source hours; the next day's read runs while the caller writes this
    one's rows."""
    pending = reader.submit(_read_hours, source, days[0], org)
    for index, day in enumerate(days):
        hours = pending.result()
        if index + 1 < len(days):
            pending = reader.submit(_read_hours, source, days[index + 1], org)
        yield day, hours


# -- the pure parts: what to write, from what was read -------------------------------------------


def retained_hours(
    coverage: Coverage, day: date, hours: list[RawRow]
) -> tuple[tuple[datetime, datetime], list[RawRow]] | None:
    """The part of ``day`` the hourly tier keeps, with its rows; None when it keeps none."""
    start, end = max(day_start(day), coverage.hourly_from), day_start(day + DAY)
    if start >= end:
        return None
    return (start, end), [row for row in hours if row[1] >= start]


def outside_days(month: date, days: list[date]) -> list[tuple[date, date]]:
    """The days of ``month`` outside the window, as ranges: a monthly row is the whole month."""
    return day_ranges(d for d in days_between(month, next_month(month)) if d not in days)


def changed_rows(old: Rollup, new: list[RawRow]) -> int:
    """Rows that replacing ``old`` by ``new`` would insert, update or delete."""
    rows = as_rollup(new)
    changed = sum(1 for k, v in rows.items() if old.get(k) != v)
    return changed + sum(1 for k in old if k not in rows)


def _reaches(floor: Any, start: Any, end: Any) -> bool:
    """A cleanup floor (None: no cleanup below retention) within the rewritten [start, end]."""
    return bool(floor) and start <= floor <= end


def lifted_floors(
    options: BackfillOptions,
    coverage: Coverage,
    days: list[date],
    hourly_floor: str | None,
    daily_floor: str | None,
) -> dict[str, object]:
    """Cleanup floors a month's writes made obsolete. Rows from a floor on were kept; if this
    month's window [start, end) reaches the floor, every row from ``start`` on is there again.
    (A cleanup between two months raises the floor above the next, older month, which then
    leaves it alone.)"""
    lifted: dict[str, object] = {}
    end = days[-1] + DAY
    start = max(day_start(days[0]), coverage.hourly_from)
    if not options.skip_hourly and _reaches(
        hourly_floor and datetime.fromisoformat(hourly_floor), start, day_start(end)
    ):
        lifted[state.HOURLY_DELETED_BEFORE] = start.isoformat()
    first = max(days[0], coverage.daily_from)
    if not options.skip_daily and _reaches(
        daily_floor and date.fromisoformat(daily_floor), first, end
    ):
        lifted[state.DAILY_DELETED_BEFORE] = first.isoformat()
    return lifted


def trusted_hours(
    options: BackfillOptions, coverage: Coverage, days: list[date], untrusted: list[str]
) -> dict[str, object]:
    """The untrusted hourly days after a month: those it skipped added, those it rewrote for
    every organization removed."""
    was = set(untrusted)
    if options.skip_hourly:
        # The hourly tier of these days was not brought up to date: ticks must not derive
        # day and month differences from it.
        kept = {d.isoformat() for d in days if d >= coverage.hourly_from.date()}
        return {state.HOURLY_UNTRUSTED: sorted(was | kept)}
    if options.organization_id is None and was:
        # Every organization's hours of these days were rewritten: trusted again.
        return {state.HOURLY_UNTRUSTED: sorted(was - {d.isoformat() for d in days})}
    return {}


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
        report.months = [month.strftime("%Y-%m") for month, _ in months]
        # Newest month first: each month lowers a cleanup floor only to its own start, so the
        # floor follows the restored range down, contiguously (see lifted_floors).
        for month, days in reversed(months):
            self._month(now, month, days, report, progress)
        opts = self.options
        if not opts.dry_run and (opts.skip_hourly or opts.skip_daily or opts.skip_monthly):
            # A skipped tier may now lag a pending change the others absorbed: the next tick
            # recomputes the window and rebuilds its days and months from the tiers below.
            start = day_start(report.start)
            state.request_recompute(self.aggregator.rollup, start, day_start(report.end + DAY), now)
        log.info(
            "backfill",
            extra={
                "fields": {
                    "start": report.start.isoformat(),
                    "end": report.end.isoformat(),
                    "organization_id": self.options.organization_id,
                    "dry_run": self.options.dry_run,
                    "tables": {k: vars(v) for k, v in report.tiers.items()},
                }
            },
        )
        return report

    def _write(
        self,
        conn: Connection,
        tier: Tier,
        ranges: list[tuple[object, object]],
        new: list[RawRow],
        stamp: datetime,
        backfill_report: BackfillReport,
    ) -> int:
        report = backfill_report.tiers[tier.table.name]
        report.rows += len(new)
        if self.options.dry_run:
            old = store.builtin_only(store.read(conn, tier, ranges, self.options.organization_id))
            report.written += changed_rows(old, new)
            return 0
        written = store.replace(conn, tier, ranges, new, stamp, self.options.organization_id)
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
        """One month in one locked transaction over one source snapshot."""
        agg = self.aggregator
        with agg.rollup.begin() as conn:
            state.take_write_lock(conn)
            # What the tiers keep by retention: a backfill restores what a cleanup with a shorter
            # retention deleted (and lifts that floor, once the rows are back).
            coverage = Coverage.at(
                now, agg.settings.hourly_retention_days, agg.settings.daily_retention_days
            )
            written = self._month_rows(conn, now, coverage, month, days, report, progress)
            if progress:
                progress(1, month.strftime("%Y-%m"))
            if not self.options.dry_run:  # else nothing was written
                self._month_state(conn, now, coverage, days, written)

    def _month_rows(
        self,
        conn: Connection,
        now: datetime,
        coverage: Coverage,
        month: date,
        days: list[date],
        report: BackfillReport,
        progress: Progress | None,
    ) -> int:
        """Read, sum and write the window's hours and days, then the whole month, for the
        organization rows and the breakdowns alike."""
        org = self.options.organization_id
        written = 0
        month_totals = [RowSums() for _ in FAMILIES]
        with (
            source_snapshot(self.aggregator.source) as source,
            # The next day's source read overlaps this day's rollup writes. One worker: the
            # snapshot's connection is only ever used by one thread at a time.
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-read") as reader,
        ):
            for day, per_family in _prefetched(reader, source, days, org):
                for family, hours, month_total in zip(
                    FAMILIES, per_family, month_totals, strict=True
                ):
                    day_total = RowSums()
                    day_total.add_all(hours)
                    day_rows = day_total.rows(day)
                    month_total.add_all(day_rows)  # a month is the sum of its days
                    written += self._write_day(
                        conn, now, coverage, family, (day, hours, day_rows), report
                    )
                if progress:
                    progress(1, day.isoformat())
            if not self.options.skip_monthly:
                outside = outside_days(month, days)
                rest = reader.submit(_read_months, source, outside, org).result()
                for family, month_total, rows in zip(FAMILIES, month_totals, rest, strict=True):
                    month_total.add_all(rows)
                    written += self._write(
                        conn,
                        family.monthly,
                        [(month, next_month(month))],
                        month_total.rows(month),
                        now,
                        report,
                    )
        return written

    def _write_day(
        self,
        conn: Connection,
        now: datetime,
        coverage: Coverage,
        family: Family,
        rows_of_day: tuple[date, list[RawRow], list[RawRow]],
        report: BackfillReport,
    ) -> int:
        """A day's hourly rows (where the hourly tier keeps them) and its daily rows, of one
        family."""
        day, hours, day_rows = rows_of_day
        written = 0
        retained = None if self.options.skip_hourly else retained_hours(coverage, day, hours)
        if retained is not None:
            span, rows = retained
            written += self._write(conn, family.hourly, [span], rows, now, report)
        if not self.options.skip_daily and coverage.day_covered(day):
            whole_day = (day, day + DAY)
            written += self._write(conn, family.daily, [whole_day], day_rows, now, report)
        return written

    def _month_state(
        self, conn: Connection, now: datetime, coverage: Coverage, days: list[date], written: int
    ) -> None:
        """The month's aggregator_state: trusted hourly days, lifted floors, totals, generation."""
        untrusted = state.get(conn, state.HOURLY_UNTRUSTED) or []
        updates = trusted_hours(self.options, coverage, days, untrusted)
        if self.options.organization_id is None:
            hourly_floor = state.get(conn, state.HOURLY_DELETED_BEFORE)
            daily_floor = state.get(conn, state.DAILY_DELETED_BEFORE)
            updates.update(lifted_floors(self.options, coverage, days, hourly_floor, daily_floor))
        if written:
            totals.refresh_totals(conn, now)
            updates[state.GENERATION] = state.generation(conn) + 1
        if updates:
            state.put(conn, updates, now)
