"""Crash safety (SIGKILL mid-tick) and two aggregators at once, with real processes."""

from __future__ import annotations

import json
import random
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest

from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import utcnow
from tests.harness import FakeClock, Harness
from tests.processes import LineReader, eventually, run, start, wait_for
from tests.test_up import free_port


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())["role"]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["role"]
    except OSError:
        return 0, ""


def _history(h: Harness, rng: random.Random, rows: int) -> None:
    orgs = [h.org() for _ in range(2)]
    for _ in range(rows):
        org = rng.choice(orgs)
        created = h.clock() - timedelta(minutes=rng.randrange(40 * 24 * 60))
        org.usage(
            created,
            reason=rng.choice(["extraction", "challenge"]),
            cost=rng.uniform(0, 0.1),
            tokens=rng.randrange(50_000),
        )
        file_id = org.file(
            org.execution(created, kind=rng.choice(["api", "etl"])),
            created,
            status=rng.choice(["COMPLETED", "ERROR"]),
        )
        org.pages(file_id, created, rng.randrange(1, 30))


@pytest.fixture
def live(db_settings: Settings) -> Iterator[Harness]:
    """A harness on real time: the processes under test use the wall clock."""
    harness = Harness(db_settings, FakeClock(utcnow()))
    yield harness
    harness.dispose()


def test_ticks_killed_at_random_points_leave_every_tier_exact(live: Harness) -> None:
    rng = random.Random(11)
    for attempt in range(4):
        live.clock.now = utcnow()
        _history(live, rng, 60)
        process = start(live.settings, "aggregate", "--once", "--reconcile")
        try:
            process.wait(timeout=rng.uniform(0.2, 2.0))
        except Exception:
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert process.returncode in (0, -signal.SIGKILL), (attempt, process.stderr.read())
    finished = run(live.settings, "aggregate", "--once")
    assert finished.returncode == 0, finished.stderr
    live.clock.now = utcnow()
    live.assert_matches_oracle()


def test_two_aggregators_one_active_one_standby_no_double_counting(live: Harness) -> None:
    rng = random.Random(5)
    _history(live, rng, 20)
    ports = [free_port(), free_port()]
    first = start(live.settings, "aggregate", "--tick-seconds", "1", "--health-port", str(ports[0]))
    second = start(
        live.settings, "aggregate", "--tick-seconds", "1", "--health-port", str(ports[1])
    )
    logs = {p: LineReader(p.stderr) for p in (first, second)}  # type: ignore[arg-type]
    health = dict(zip((first, second), ports, strict=True))
    try:
        wait_for(lambda: all("leader" in r.text() or "standby" in r.text() for r in logs.values()))
        leaders = [p for p, r in logs.items() if "leader" in r.text()]
        assert len(leaders) == 1, {p.pid: r.text()[-500:] for p, r in logs.items()}
        leader = leaders[0]
        standby = second if leader is first else first
        wait_for(lambda: probe(health[leader], "/readyz") == (200, "leader"))
        assert probe(health[standby], "/readyz") == (200, "standby")
        assert probe(health[standby], "/healthz") == (200, "standby")

        def settled() -> None:
            live.clock.now = utcnow()
            live.assert_matches_oracle()

        eventually(settled)
        live.clock.now = utcnow()
        _history(live, rng, 10)  # changes while both run
        eventually(settled)
        leader.send_signal(signal.SIGKILL)  # the standby takes over
        leader.wait()
        wait_for(lambda: "leader" in logs[standby].text(), timeout=20)
        live.clock.now = utcnow()
        _history(live, rng, 10)
        eventually(settled)
        standby.send_signal(signal.SIGTERM)  # a clean stop
        assert standby.wait(timeout=20) == 0
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()
