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

from dashboard_metrics.aggregator import changes, events, totals
from dashboard_metrics.aggregator.recompute import Plan, Written, execute
from dashboard_metrics.core import runstats, state
from dashboard_metrics.core.coverage import RETENTION, Coverage, Retention, coverage_at, parse_time
from dashboard_metrics.core.schema import BREAKDOWN
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import HOUR, Clock, hours_between, utcnow

log = logging.getLogger("dashboard_metrics.aggregator")

EVENTS = "events"  # the pushed events' retention, beside the tiers' in TickResult.cleaned


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


# -- the pure parts of a tick and of retention: what to do, from what was read --------------------


def due(stored: dict[str, Any], key: str, due_at: datetime) -> bool:
    """A scheduled job last run (ISO time under ``key``) before ``due_at``, or never."""
    last = parse_time(stored.get(key))
    return last is None or last < due_at


def reconcile_due(settings: Settings, stored: dict[str, Any], now: datetime) -> bool:
    return due(stored, state.LAST_RECONCILE, last_occurrence(now, settings.reconcile_at))


def cleanups_due(settings: Settings, stored: dict[str, Any], now: datetime) -> list[Retention]:
    """The tiers whose scheduled cleanup has come since it last ran."""
    return [
        r
        for r in RETENTION.values()
        if due(stored, r.last_key, last_occurrence(now, r.cleanup_at(settings), r.weekday))
    ]


def requested_hours(stored: dict[str, Any]) -> set[datetime]:
    """The hours of the recompute requests (state.request_recompute) waiting for this tick."""
    hours: set[datetime] = set()
    for start, end in stored.get(state.RECOMPUTE_REQUESTS) or []:
        hours.update(hours_between(datetime.fromisoformat(start), datetime.fromisoformat(end)))
    return hours


@dataclass(frozen=True)
class TickWork:
    """What a tick recomputes: the dirty hours and the buckets they make dirty."""

    dirty: set[datetime]
    coverage: Coverage
    plan: Plan

    @property
    def plan_counts(self) -> dict[str, int]:
        return {
            "hours": len(self.plan.hours),
            "days": len(self.plan.days),
            "months": len(self.plan.months),
        }


def plan_tick(
    settings: Settings,
    stored: dict[str, Any],
    changed: set[datetime],
    now: datetime,
    reconcile: bool,
) -> TickWork:
    """The hours that changed, were requested, or are reconciled, and the plan that recomputes
    them where the tiers hold them."""
    requested = requested_hours(stored)
    dirty = changed | requested
    if reconcile:
        start = now - timedelta(days=settings.reconcile_days)
        dirty |= set(hours_between(start, now + HOUR))
    coverage = coverage_at(settings, stored, now)
    plan = Plan.for_dirty_hours(dirty, coverage, {h.date() for h in requested})
    return TickWork(dirty, coverage, plan)


def tick_state(
    stored: dict[str, Any],
    scanned: dict[str, Any],
    result: TickResult,
    changed: bool,
    failures: int,
) -> dict[str, Any]:
    """The aggregator_state values a tick stores: the scan's watermarks, the consumed requests,
    the new generation when rows ``changed``, the run's record and counters."""
    values: dict[str, Any] = dict(scanned)
    if stored.get(state.RECOMPUTE_REQUESTS):
        values[state.RECOMPUTE_REQUESTS] = []
    if result.reconciled:
        values[state.LAST_RECONCILE] = result.started_at.isoformat()
    if changed:
        values[state.GENERATION] = result.generation
    values[state.LAST_TICK] = result.as_dict()
    values[state.TICKS_TOTAL] = int(stored.get(state.TICKS_TOTAL) or 0) + 1
    values[state.TICK_FAILURES_TOTAL] = int(stored.get(state.TICK_FAILURES_TOTAL) or 0) + failures
    return values


def cleanup_state(
    retention: Retention,
    floor: str | None,
    untrusted: list[str] | None,
    cutoff: datetime,
    now: datetime,
) -> dict[str, Any]:
    """The aggregator_state values a cleanup of ``retention``'s tier up to ``cutoff`` stores:
    the raised floor (never lowered), untrusted days still kept, when it ran."""
    bound = retention.bound(cutoff)
    values: dict[str, Any] = {
        retention.floor_key: (
            bound if floor is None else max(retention.parse(floor), bound)
        ).isoformat(),
        retention.last_key: now.isoformat(),
    }
    if retention.untrusted_key is not None:
        kept = [d for d in untrusted or [] if date.fromisoformat(d) >= cutoff.date()]
        values[retention.untrusted_key] = kept
    return values


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
                reconcile = reconcile_due(self.settings, stored, now)
            result.reconciled = reconcile
            scanned = self._recompute(conn, stored, now, result)
            if housekeeping:
                result.cleaned = self._housekeeping(conn, stored, now)
            # Deleting old events changes no rollup row.
            cleaned = sum(n for name, n in result.cleaned.items() if name != EVENTS)
            changed = bool(result.rows_written or cleaned)
            if changed:
                totals.refresh_totals(conn, now)
            result.generation = state.generation_in(stored) + int(changed)
            result.duration_seconds = self.monotonic() - began
            values = tick_state(stored, scanned, result, changed, self.pending_failures)
            state.put(conn, values, now)
            runstats.record_tick(conn, result.as_dict(), now)
        self.pending_failures = 0
        log.info("tick", extra={"fields": result.as_dict()})
        return result

    def _recompute(
        self, conn: Connection, stored: dict[str, Any], now: datetime, result: TickResult
    ) -> dict[str, Any]:
        """Scan the source for changes, recompute what they touched (into ``result``) and return
        the scan's aggregator_state values, all over one source snapshot."""
        with source_snapshot(self.source) as source:
            # The watermark is the snapshot's clock (or ours, when earlier), never a row's
            # stamp: a writer whose clock runs ahead cannot hide rows written after it.
            watermark = min(filter(None, (changes.source_now(source), now)))
            overlap = timedelta(seconds=self.settings.change_overlap_seconds)
            scanned = changes.scan_changes(conn, source, stored, watermark, overlap)
            event_hours, seen = events.new_event_hours(conn, stored)
            dirty = scanned.dirty | event_hours
            work = plan_tick(self.settings, stored, dirty, now, result.reconciled)
            written = (
                execute(conn, source, work.plan, work.coverage, now) if work.plan else Written()
            )
        result.dirty_hours = len(work.dirty)
        result.plan = work.plan_counts
        result.written = written.as_dict()
        return {**scanned.state, **seen}

    # -- retention ------------------------------------------------------------------------
    def _housekeeping(
        self, conn: Connection, stored: dict[str, Any], now: datetime
    ) -> dict[str, int]:
        cleaned = {
            r.tier.name: self._cleanup(conn, r, r.days(self.settings), now)
            for r in cleanups_due(self.settings, stored, now)
        }
        # The pushed events, daily with the hourly tier's cleanup.
        if due(
            stored, state.LAST_EVENTS_CLEANUP, last_occurrence(now, self.settings.hourly_cleanup_at)
        ):
            cutoff = now - timedelta(days=self.settings.events_retention_days)
            cleaned[EVENTS] = events.cleanup(conn, stored, cutoff, now)
        return cleaned

    def _cleanup(
        self, conn: Connection, retention: Retention, retention_days: int, now: datetime
    ) -> int:
        cutoff = now - timedelta(days=retention_days)
        tier = retention.tier
        deleted = conn.execute(
            delete(tier.table).where(tier.period < retention.bound(cutoff))
        ).rowcount
        # The breakdowns keep exactly what the organization rows keep.
        breakdown = BREAKDOWN.tier(tier.name)
        conn.execute(delete(breakdown.table).where(breakdown.period < retention.bound(cutoff)))
        untrusted = state.get(conn, retention.untrusted_key) if retention.untrusted_key else None
        floor = state.get(conn, retention.floor_key)
        state.put(conn, cleanup_state(retention, floor, untrusted, cutoff, now), now)
        log.info(
            "cleanup",
            extra={"fields": {"tier": tier.name, "deleted": deleted, "cutoff": cutoff.isoformat()}},
        )
        return int(deleted or 0)

    def cleanup(self, tier: str, retention_days: int | None = None) -> int:
        """Delete rows of ``tier`` older than the retention now (the ``cleanup`` command)."""
        retention = RETENTION[tier]
        days = retention_days or retention.days(self.settings)
        now = self.clock()
        with self.rollup.begin() as conn:
            state.take_write_lock(conn)
            deleted = self._cleanup(conn, retention, days, now)
            if deleted:
                totals.refresh_totals(conn, now)
                state.put(conn, {state.GENERATION: state.generation(conn) + 1}, now)
        return deleted
