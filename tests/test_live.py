"""A bounded live run on PostgreSQL: writer processes insert and update source rows on the wall
clock (with transactions that commit seconds after they stamp their rows) while two aggregators
tick every second, the active one is SIGKILLed and restarted, and a backfill runs beside them.
Afterwards every tier equals the oracle."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime

from dashboard_metrics.core import state
from dashboard_metrics.core.timeutil import utcnow
from tests.harness import Harness
from tests.processes import cli_env, run, start, wait_for

WRITE_SECONDS = 25
TICK = {"DASHBOARD_METRICS_TICK_SECONDS": "1"}


def _last_tick_started(h: Harness) -> datetime | None:
    with h.rollup.connect() as conn:
        last = state.get(conn, state.LAST_TICK)
    return None if last is None else datetime.fromisoformat(last["started_at"])


def writer_args(seed: int) -> list[str]:
    return [str(WRITE_SECONDS), str(seed), str(100 * seed)]  # distinct organization keys


def test_live_writers_kills_standby_and_backfill(pg_h: Harness) -> None:
    h = pg_h
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.live_writer", h.settings.rollup_url, *writer_args(seed)],
            env=cli_env(h.settings),
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2, 3)
    ]
    aggregators = [start(h.settings, "aggregate", **TICK) for _ in range(2)]
    try:
        began = time.monotonic()
        kills = 0
        backfilled = False
        while any(w.poll() is None for w in writers):
            time.sleep(1.5)
            elapsed = time.monotonic() - began
            if elapsed > 6 * (kills + 1) and kills < 3:  # SIGKILL one aggregator, restart it
                victim = aggregators.pop(kills % len(aggregators))
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                aggregators.append(start(h.settings, "aggregate", **TICK))
                kills += 1
            if elapsed > 10 and not backfilled:
                done = run(h.settings, "backfill", "--days", "3")
                assert done.returncode == 0, done.stderr
                backfilled = True
        for writer in writers:
            assert writer.wait() == 0, writer.stderr.read() if writer.stderr else ""
        assert kills == 3 and backfilled
        writes_ended = utcnow()

        def caught_up() -> bool:
            started = _last_tick_started(h)
            return started is not None and started > writes_ended

        wait_for(caught_up, timeout=30)
    finally:
        for process in aggregators + writers:
            if process.poll() is None:
                process.kill()
                process.wait()
    h.clock.now = utcnow()
    h.assert_matches_oracle()
    with h.rollup.connect() as conn:
        assert int(state.get(conn, state.TICKS_TOTAL)) >= WRITE_SECONDS // 2  # ticks did run
