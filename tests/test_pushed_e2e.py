"""Pushed events end to end with real processes, on both dialects: `serve` killed with SIGKILL
in the middle of ingest, then every batch retried (no loss, no double count); `push` sending a
JSON-lines file to a running service twice (the second time all duplicates); each time the
tiers after a tick equal the sums of the distinct events sent."""

from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dashboard_metrics.core.schema import pushed_event_partials, pushed_events
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import utcnow
from tests.conftest import EXAMPLE_METRICS_FILE
from tests.harness import FakeClock, Harness
from tests.processes import LineReader, run, start, wait_for
from tests.test_up import free_port

pytestmark = pytest.mark.usefixtures("pushed_catalogue")
KEY = "e2e-ingest-key"


@pytest.fixture
def live(db_settings: Settings) -> Iterator[Harness]:
    """A harness on real time: `serve` stamps events with the wall clock."""
    harness = Harness(db_settings, FakeClock(utcnow()))
    yield harness
    harness.dispose()


def serve(h: Harness, port: int) -> subprocess.Popen[str]:
    process = start(
        h.settings,
        "serve",
        DASHBOARD_METRICS_PORT=str(port),
        DASHBOARD_METRICS_INGEST_KEYS=f"{KEY}=*",
        DASHBOARD_METRICS_METRICS_FILE=str(EXAMPLE_METRICS_FILE),
    )
    LineReader(process.stderr)  # type: ignore[arg-type]

    def up() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return True
        except OSError:
            return False

    wait_for(up, timeout=60)
    return process


def post(port: int, org: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/unstract/{org}/events/",
        data=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def batches(rng: random.Random, count: int, size: int) -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for b in range(count):
        org = f"org_{b % 3}"
        events = [
            {
                "id": f"b{b}-{i}",
                "metric": rng.choice(["hitl_reviews", "hitl_review_seconds"]),
                "value": float(rng.randrange(1, 900)),
                "labels": {"workflow": f"wf-{rng.randrange(4)}"},
            }
            for i in range(size)
        ]
        out.append((org, events))
    return out


def expected_totals(sent: list[tuple[str, list[dict[str, Any]]]]) -> dict[Any, list[float]]:
    totals: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0])
    for org, events in sent:
        for event in events:
            cell = totals[(org, event["metric"])]
            cell[0] += event["value"]
            cell[1] += 1
    return totals


def assert_folded(h: Harness, sent: list[tuple[str, list[dict[str, Any]]]]) -> None:
    h.clock.now = utcnow()
    h.aggregator.tick()
    want = expected_totals(sent)
    stored = sum(count for _, count in want.values())
    with h.rollup.connect() as conn:
        assert conn.execute(select(func.count()).select_from(pushed_events)).scalar() == stored
        partials = select(func.sum(pushed_event_partials.c.metric_count))
        assert conn.execute(partials).scalar() == stored  # each event summed once
    for tier in ("hourly", "daily", "monthly"):
        got: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0])
        for (org, _period, name), (value, count, _b) in h.tier_rows(tier).items():
            got[(org, name)][0] += value
            got[(org, name)][1] += count
        assert set(got) == set(want), tier
        for key, (value, count) in want.items():
            assert got[key][1] == count, (tier, key)
            assert math.isclose(got[key][0], value, rel_tol=1e-9), (tier, key)


def test_sigkill_of_serve_during_ingest_then_a_retry_loses_and_doubles_nothing(
    live: Harness,
) -> None:
    h = live
    port = free_port()
    sent = batches(random.Random(5), 60, 200)
    process = serve(h, port)
    answered: list[int] = []

    def client() -> None:
        for index, (org, events) in enumerate(sent):
            try:
                post(port, org, events)
                answered.append(index)
            except OSError:
                return  # the service is gone: the batch in flight may or may not be stored

    sender = threading.Thread(target=client)
    sender.start()
    wait_for(lambda: len(answered) >= 5, timeout=60)
    time.sleep(random.Random(7).uniform(0.0, 0.2))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    sender.join(timeout=60)
    assert len(answered) < len(sent)  # killed mid-ingest
    process = serve(h, port)
    try:
        for index, (org, events) in enumerate(sent):  # the client retries every batch
            body = post(port, org, events)
            assert body["accepted"] + body["duplicates"] == len(events), body
            if index in answered:
                assert body["accepted"] == 0, (index, body)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert_folded(h, sent)


def test_push_sends_a_file_and_a_rerun_changes_nothing(live: Harness, tmp_path: Path) -> None:
    h = live
    port = free_port()
    sent = batches(random.Random(9), 3, 150)
    lines = [json.dumps({**event, "org_id": org}) for org, events in sent for event in events]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    process = serve(h, port)
    try:
        args = ("push", str(path), "--url", f"http://127.0.0.1:{port}", "--key", KEY)
        first = run(h.settings, *args, "--batch-size", "100")
        assert first.returncode == 0, first.stderr
        again = run(h.settings, *args)
        assert again.returncode == 0, again.stderr
        assert "sent 450 events in 6 batches" in first.stdout, first.stdout
        assert "450 accepted, 0 duplicates" in first.stdout, first.stdout
        assert "0 accepted, 450 duplicates" in again.stdout, again.stdout
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert_folded(h, sent)
