"""The aggregator daemon: one active writer, hot standbys, `schedule`-driven ticks.

Reconciliation and retention are due-checks inside each tick (persisted in aggregator_state), so
they run at their UTC times, survive restarts, and are tested with a fake clock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from pathlib import Path
from typing import IO, Any

import schedule
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from dashboard_metrics.aggregator.engine import Aggregator
from dashboard_metrics.core import state
from dashboard_metrics.core.db import first_line

log = logging.getLogger("dashboard_metrics.daemon")


class LeaderLock:
    """Held by the active aggregator for its lifetime; the others wait as hot standbys.

    PostgreSQL: a session advisory lock on a dedicated connection (released if the process dies).
    SQLite: an exclusive flock on a file beside the database.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        self._file: IO[str] | None = None

    def try_acquire(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            return self._try_pg()
        return self._try_file()

    def _try_pg(self) -> bool:
        if self._conn is not None:
            try:  # still ours while the session lives
                self._conn.execute(text("SELECT 1"))
                return True
            except SQLAlchemyError:
                self.release()
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        got = conn.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": state.LEADER_LOCK_KEY}
        ).scalar()
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def _try_file(self) -> bool:
        if self._file is not None:
            return True
        database = self.engine.url.database or "memory"
        handle = open(Path(f"{database}.aggregator.lock"), "a")  # noqa: SIM115 - held open
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.close()
            self._file = None


class Daemon:
    def __init__(
        self,
        aggregator: Aggregator,
        stop: threading.Event | None = None,
        standby_poll_seconds: float = 5.0,
    ) -> None:
        self.aggregator = aggregator
        self.stop = stop or threading.Event()
        self.standby_poll_seconds = standby_poll_seconds
        self.leader = LeaderLock(aggregator.rollup)
        self.scheduler = schedule.Scheduler()
        self.failures = 0
        self.ticks = 0
        self.role = "starting"
        self.last_success: float | None = None  # time.monotonic() of the last good tick
        self.last_error = ""

    def safe_tick(self) -> None:
        """One tick; a failure is logged and counted, and the next tick retries."""
        if not self.leader.try_acquire():
            log.warning("lost leadership; waiting as standby")
            self._wait_for_leadership()
            return
        try:
            self.aggregator.tick()
            self.ticks += 1
            self.last_success = time.monotonic()
            self.last_error = ""
        except SQLAlchemyError as exc:
            self.failures += 1
            self.aggregator.pending_failures += 1
            self.last_error = first_line(exc)
            log.error(
                "tick failed",
                extra={"fields": {"error": first_line(exc), "failures": self.failures}},
            )
        except Exception as exc:  # a bug must not kill the daemon; it is logged and counted
            self.failures += 1
            self.last_error = repr(exc)
            self.aggregator.pending_failures += 1
            log.exception("tick failed", extra={"fields": {"error": repr(exc)}})

    def _wait_for_leadership(self) -> bool:
        announced = False
        while not self.stop.is_set():
            try:
                if self.leader.try_acquire():
                    self.role = "leader"
                    log.info("leader: this aggregator is the active writer")
                    return True
            except SQLAlchemyError as exc:
                log.error("leader lock unavailable", extra={"fields": {"error": first_line(exc)}})
            self.role = "standby"
            if not announced:
                log.info("standby: another aggregator is active; waiting")
                announced = True
            self.stop.wait(self.standby_poll_seconds)
        return False

    def run(self) -> None:
        if not self._wait_for_leadership():
            return
        every = self.aggregator.settings.tick_seconds
        self.scheduler.every(every).seconds.do(self.safe_tick)  # type: ignore[arg-type]
        self.safe_tick()
        while not self.stop.is_set():
            self.scheduler.run_pending()
            idle = self.scheduler.idle_seconds
            self.stop.wait(max(0.05, min(1.0, idle if idle is not None else 1.0)))
        self.leader.release()
        log.info(
            "aggregator stopped", extra={"fields": {"ticks": self.ticks, "failures": self.failures}}
        )

    def run_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="aggregator", daemon=True)
        thread.start()
        return thread


def describe(settings: Any) -> dict[str, Any]:
    return {
        "tick_seconds": settings.tick_seconds,
        "reconcile_at": settings.reconcile_at,
        "reconcile_days": settings.reconcile_days,
        "hourly_cleanup_at": settings.hourly_cleanup_at,
        "daily_cleanup_at": f"Sunday {settings.daily_cleanup_at}",
    }
