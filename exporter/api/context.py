"""Per-application state of the JSON API: engines, cache, auth and the aggregator's state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.engine import Engine

from dashboard_metrics.core import state
from dashboard_metrics.core.coverage import Coverage, coverage_at
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import DAY, Clock, day_start
from dashboard_metrics.exporter.api.params import DateRange
from dashboard_metrics.exporter.api.plan import ReadPlan, choose
from dashboard_metrics.exporter.auth import Authenticator
from dashboard_metrics.exporter.cache import ResilientCache
from dashboard_metrics.exporter.dbcall import run_db


def reads(engine: Engine) -> Engine:
    """The engine for the handlers' reads. On PostgreSQL they run in autocommit: at READ
    COMMITTED every statement takes its own snapshot inside a transaction too, so only the
    BEGIN and ROLLBACK round trips go. SQLite keeps its (snapshot) read transactions."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def _read_state(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return state.get_all(conn)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


# A plan with the times between which it holds: valid from, valid until, the plan.
PlanEntry = tuple[datetime, datetime, ReadPlan]


@dataclass
class Api:
    settings: Settings
    clock: Clock
    rollup: Engine
    source: Engine
    cache: ResilientCache
    auth: Authenticator
    # The aggregator state (generation, coverage floors) is re-read at most this often.
    state_ttl: float = 1.0
    monotonic: Callable[[], float] = time.monotonic
    # What the handlers read the rollups with (see `reads`).
    reader: Engine = field(init=False, repr=False)
    _state: tuple[float, dict[str, Any]] | None = field(default=None, repr=False)
    _reading: asyncio.Future[dict[str, Any]] | None = field(default=None, repr=False)
    # Plans chosen under one aggregator-state snapshot, by key.
    _plans: tuple[dict[str, Any], dict[Hashable, PlanEntry]] | None = field(
        default=None, repr=False
    )

    def __post_init__(self) -> None:
        self.reader = reads(self.rollup)

    async def aggregator_state(self) -> dict[str, Any]:
        now = self.monotonic()
        if self._state is not None and now - self._state[0] < self.state_ttl:
            return self._state[1]
        if self._reading is not None and self.state_ttl > 0:
            # One read at a time: concurrent requests share the one already under way (it
            # began after the cached state expired, within the same staleness bound).
            return await asyncio.shield(self._reading)
        reading = asyncio.ensure_future(run_db(lambda: _read_state(self.reader)))
        reading.add_done_callback(_retrieve)  # a failure nobody awaits any more is not logged
        self._reading = reading
        try:
            values = await asyncio.shield(reading)
        finally:
            if self._reading is reading:
                self._reading = None
        self._state = (now, values)
        self.cache.observe_generation(state.generation_in(values))
        return values

    async def generation(self) -> int:
        return state.generation_in(await self.aggregator_state())

    async def coverage(self, now: datetime) -> Coverage:
        """What each tier holds completely now: the aggregator's own rule."""
        return coverage_at(self.settings, await self.aggregator_state(), now)

    async def plan(
        self, rng: DateRange, source: str, granularity: str | None, now: datetime
    ) -> ReadPlan:
        """``choose`` at ``now``, remembered while its answer cannot change.

        Under one state snapshot (untrusted days and cleanup floors fixed) coverage only
        shrinks as ``now`` grows: tiers that failed keep failing, and the chosen plan holds
        until the retention reaches the first hour or day it checked (`_valid_until`).
        """
        values = await self.aggregator_state()
        if self._plans is None or self._plans[0] is not values:
            self._plans = (values, {})
        plans = self._plans[1]
        key = (rng.first_hour, rng.end_hour, rng.days, rng.tz, source, granularity)
        known = plans.get(key)
        if known is not None and known[0] <= now < known[1]:
            return known[2]
        plan = choose(rng, source, granularity, await self.coverage(now))
        if len(plans) >= MAX_PLANS:
            plans.clear()
        plans[key] = (now, _valid_until(plan, self.settings), plan)
        return plan


MAX_PLANS = 4096
FOREVER = datetime.max.replace(tzinfo=UTC)


def _valid_until(plan: ReadPlan, settings: Settings) -> datetime:
    """The first ``now`` at which a check `choose` passed for ``plan`` may fail: an hourly piece
    starting at S needs S >= now - hourly retention; a daily piece from day D needs
    D >= (now - daily retention).date(). Monthly pieces are not limited."""
    hourly = timedelta(days=settings.hourly_retention_days)
    daily = timedelta(days=settings.daily_retention_days)
    bounds = [start + hourly for start, _end in plan.hours]
    bounds += [day_start(first + DAY) + daily for first, _last in plan.days]
    return min(bounds, default=FOREVER)


API = web.AppKey("dashboard_api", Api)
