"""The aggregator: ticks (change scan, recompute, reconciliation) and retention."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Connection, Engine

from dashboard_metrics.aggregator import changes, totals
from dashboard_metrics.aggregator.recompute import Plan, Written, execute
from dashboard_metrics.core import runstats, state
from dashboard_metrics.core.coverage import Coverage, coverage_at, parse_time
from dashboard_metrics.core.schema import DAILY, HOURLY
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import HOUR, Clock, hours_between, utcnow

log = logging.getLogger("dashboard_metrics.aggregator")


@contextmanager
def source_snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction: every source query of a unit of work sees the same snapshot."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        with conn.begin():
            yield conn


@dataclass
class TickResult:
    started_at: datetime
    duration_seconds: float = 0.0
    dirty_hours: int = 0
    plan: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    reconciled: bool = False
    cleaned: dict[str, int] = field(default_factory=dict)
    generation: int = 0

    @property
    def rows_written(self) -> int:
        return sum(self.written.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 6),
            "dirty_hours": self.dirty_hours,
            "recomputed": self.plan,
            "rows_written": self.written,
            "reconciled": self.reconciled,
            "cleaned": self.cleaned,
            "generation": self.generation,
        }


def last_occurrence(now: datetime, hh_mm: str, weekday: int | None = None) -> datetime:
    """The latest UTC time <= now at HH:MM (on ``weekday``, Monday=0, when given)."""
    hours, minutes = (int(part) for part in hh_mm.split(":"))
    candidate = now.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    while candidate > now or (weekday is not None and candidate.weekday() != weekday):
        candidate -= timedelta(days=1)
    return candidate


class Aggregator:
    def __init__(
        self,
        settings: Settings,
        rollup: Engine,
        source: Engine,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings
        self.rollup = rollup
        self.source = source
        self.clock = clock
        self.monotonic = monotonic
        # Failed ticks not yet counted in aggregator_state (the database may have been down).
        self.pending_failures = 0

    # -- coverage -------------------------------------------------------------------------
    def coverage(self, conn: Connection, now: datetime) -> Coverage:
        return coverage_at(self.settings, state.get_all(conn), now)

    # -- ticks ----------------------------------------------------------------------------
    def _requested_hours(self, stored: dict[str, Any]) -> set[datetime]:
        hours: set[datetime] = set()
        for start, end in stored.get(state.RECOMPUTE_REQUESTS) or []:
            hours.update(hours_between(datetime.fromisoformat(start), datetime.fromisoformat(end)))
        return hours

    def _due(self, values: dict[str, Any], key: str, due_at: datetime) -> bool:
        last = parse_time(values.get(key))
        return last is None or last < due_at

    def tick(self, *, reconcile: bool | None = None, housekeeping: bool = True) -> TickResult:
        """Recompute every bucket touched since the last tick, atomically.

        ``reconcile=None`` reconciles when the daily reconciliation is due; retention runs when
        due if ``housekeeping``.
        """
        now = self.clock()
        began = self.monotonic()
        result = TickResult(started_at=now)
        with self.rollup.begin() as conn:
            state.take_write_lock(conn)
            stored = state.get_all(conn)  # read once: nothing else writes it under the lock
            if reconcile is None:
                due = last_occurrence(now, self.settings.reconcile_at)
                reconcile = self._due(stored, state.LAST_RECONCILE, due)
            with source_snapshot(self.source) as source:
                # The watermark is the snapshot's clock (or ours, when earlier), never a row's
                # stamp: a writer whose clock runs ahead cannot hide rows written after it.
                watermark = min(filter(None, (changes.source_now(source), now)))
                overlap = timedelta(seconds=self.settings.change_overlap_seconds)
                scanned = changes.scan_changes(conn, source, stored, watermark, overlap)
                requested = self._requested_hours(stored)
                dirty = scanned.dirty | requested
                if reconcile:
                    start = now - timedelta(days=self.settings.reconcile_days)
                    dirty |= set(hours_between(start, now + HOUR))
                coverage = coverage_at(self.settings, stored, now)
                plan = Plan.for_dirty_hours(dirty, coverage, {h.date() for h in requested})
                written = execute(conn, source, plan, coverage, now) if plan else Written()
            if housekeeping:
                result.cleaned = self._housekeeping(conn, stored, now)
            values: dict[str, Any] = dict(scanned.state)
            if stored.get(state.RECOMPUTE_REQUESTS):
                values[state.RECOMPUTE_REQUESTS] = []
            if reconcile:
                values[state.LAST_RECONCILE] = now.isoformat()
            if written.total or sum(result.cleaned.values()):
                totals.refresh_totals(conn, now)
                result.generation = int(stored.get(state.GENERATION) or 0) + 1
                values[state.GENERATION] = result.generation
            else:
                result.generation = int(stored.get(state.GENERATION) or 0)
            result.dirty_hours = len(dirty)
            result.plan = {
                "hours": len(plan.hours),
                "days": len(plan.days),
                "months": len(plan.months),
            }
            result.written = written.as_dict()
            result.reconciled = bool(reconcile)
            result.duration_seconds = self.monotonic() - began
            values[state.LAST_TICK] = result.as_dict()
            values[state.TICKS_TOTAL] = int(stored.get(state.TICKS_TOTAL) or 0) + 1
            values[state.TICK_FAILURES_TOTAL] = (
                int(stored.get(state.TICK_FAILURES_TOTAL) or 0) + self.pending_failures
            )
            state.put(conn, values, now)
            runstats.record_tick(conn, result.as_dict(), now)
        self.pending_failures = 0
        log.info("tick", extra={"fields": result.as_dict()})
        return result

    # -- retention ------------------------------------------------------------------------
    def _housekeeping(
        self, conn: Connection, stored: dict[str, Any], now: datetime
    ) -> dict[str, int]:
        cleaned: dict[str, int] = {}
        hourly_due = last_occurrence(now, self.settings.hourly_cleanup_at)
        if self._due(stored, "last_cleanup:hourly", hourly_due):
            cleaned["hourly"] = self._cleanup(
                conn, "hourly", self.settings.hourly_retention_days, now
            )
        daily_due = last_occurrence(now, self.settings.daily_cleanup_at, weekday=6)
        if self._due(stored, "last_cleanup:daily", daily_due):
            cleaned["daily"] = self._cleanup(conn, "daily", self.settings.daily_retention_days, now)
        return cleaned

    def _cleanup(self, conn: Connection, tier: str, retention_days: int, now: datetime) -> int:
        cutoff = now - timedelta(days=retention_days)
        if tier == "hourly":
            deleted = conn.execute(delete(HOURLY.table).where(HOURLY.period < cutoff)).rowcount
            untrusted = state.get(conn, state.HOURLY_UNTRUSTED) or []
            kept = [d for d in untrusted if date.fromisoformat(d) >= cutoff.date()]
            floor = parse_time(state.get(conn, state.HOURLY_DELETED_BEFORE))
            state.put(
                conn,
                {
                    state.HOURLY_UNTRUSTED: kept,
                    state.HOURLY_DELETED_BEFORE: max(filter(None, (floor, cutoff))).isoformat(),
                },
                now,
            )
        else:
            deleted = conn.execute(delete(DAILY.table).where(DAILY.period < cutoff.date())).rowcount
            floor = state.get(conn, state.DAILY_DELETED_BEFORE)
            newest = max(filter(None, (floor, cutoff.date().isoformat())))
            state.put(conn, {state.DAILY_DELETED_BEFORE: newest}, now)
        state.put(conn, {f"last_cleanup:{tier}": now.isoformat()}, now)
        log.info(
            "cleanup",
            extra={"fields": {"tier": tier, "deleted": deleted, "cutoff": cutoff.isoformat()}},
        )
        return int(deleted or 0)

    def cleanup(self, tier: str, retention_days: int | None = None) -> int:
        """Delete rows of ``tier`` older than the retention now (the ``cleanup`` command)."""
        days = retention_days or (
            self.settings.hourly_retention_days
            if tier == "hourly"
            else self.settings.daily_retention_days
        )
        now = self.clock()
        with self.rollup.begin() as conn:
            state.take_write_lock(conn)
            deleted = self._cleanup(conn, tier, days, now)
            if deleted:
                totals.refresh_totals(conn, now)
                state.put(conn, {state.GENERATION: state.generation(conn) + 1}, now)
        return deleted
