"""Freshness under load on PostgreSQL (not part of the test run; see benchmarks/README.md).

A writer commits ``--rate`` source rows per second (LLM usage rows of one organization, in
batches of ten, stamped with the wall clock) for ``--seconds``, while `dashboard-metrics
aggregate --tick-seconds N` runs as its own process. A monitor polls the hourly tier every 50 ms.
A row's delay is the time from its commit to the first poll whose hourly count includes it.
Reports p50 and p99 against the tick interval measured in the same run (target: p99 <= 2 ticks).

    UV_PYTHON_DOWNLOADS=never uv run python benchmarks/bench_freshness.py
"""

from __future__ import annotations

import argparse
import bisect
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import agg_setup as db
import psycopg

SMALL_TEMPLATE = "bench_agg_small_src"
FRESH = "bench_agg_fresh"
BATCH = 10


def write(url: str, org_pk: int, rate: float, seconds: float) -> list[tuple[float, int]]:
    """Commit ``rate`` rows a second; returns (commit time, rows committed so far) per batch."""
    commits: list[tuple[float, int]] = []
    interval = BATCH / rate
    total = 0
    with psycopg.connect(url) as conn:
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            due = began + len(commits) * interval
            time.sleep(max(0.0, due - time.monotonic()))
            now = datetime.now(UTC)
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO unstract.usage (id, organization_id, adapter_instance_id, "
                    "usage_type, llm_usage_reason, model_name, embedding_tokens, prompt_tokens, "
                    "completion_tokens, total_tokens, cost_in_dollars, created_at, modified_at) "
                    "VALUES (%s, %s, 'a', 'llm', 'extraction', 'm', 0, 10, 0, 10, 0.01, %s, %s)",
                    [(str(uuid.uuid4()), org_pk, now, now) for _ in range(BATCH)],
                )
            conn.commit()
            total += BATCH
            commits.append((time.monotonic(), total))
    return commits


def monitor(url: str, org: str, stop: threading.Event, samples: list[tuple[float, int]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            count = conn.execute(
                "SELECT coalesce(sum(metric_count), 0) FROM event_metrics_hourly "
                "WHERE organization_id = %s AND metric_name = 'llm_calls'",
                (org,),
            ).fetchone()
            samples.append((time.monotonic(), int(count[0] if count else 0)))
            stop.wait(0.05)


def delays(
    commits: list[tuple[float, int]], samples: list[tuple[float, int]], base: int
) -> list[float]:
    counts = [count - base for _, count in samples]
    # Counts only grow (nothing else writes this organization): the first sample reaching a
    # batch's cumulative total is when that batch became visible.
    out = []
    for committed_at, total in commits:
        index = bisect.bisect_left(counts, total)
        if index < len(samples):
            out.extend([samples[index][0] - committed_at] * BATCH)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="source rows per second")
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the writer runs")
    parser.add_argument("--tick-seconds", type=float, default=5.0)
    args = parser.parse_args()
    db.create_template(SMALL_TEMPLATE, orgs=200, days=3, records_per_day=5)
    db.clone(SMALL_TEMPLATE, FRESH)
    url, sa_url = db.libpq_url(FRESH), db.sqlalchemy_url(FRESH)
    env = {**os.environ, "DASHBOARD_METRICS_DATABASE_URL": sa_url}
    run = [sys.executable, "-m", "dashboard_metrics"]
    subprocess.run([*run, "backfill", "--days", "3"], env=env, check=True, capture_output=True)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id, organization_id FROM unstract.organization ORDER BY id LIMIT 1"
        ).fetchone()
    assert row is not None
    org_pk, org = row
    aggregator = subprocess.Popen(
        [*run, "aggregate", "--tick-seconds", str(args.tick_seconds)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    try:
        time.sleep(2 * args.tick_seconds)  # the first ticks catch up with the backfill
        watcher = threading.Thread(target=monitor, args=(url, org, stop, samples), daemon=True)
        watcher.start()
        time.sleep(0.5)
        base = samples[-1][1]
        commits = write(url, org_pk, args.rate, args.seconds)
        time.sleep(3 * args.tick_seconds)
    finally:
        stop.set()
        aggregator.terminate()
        aggregator.wait()
        db.drop(FRESH)
    measured = sorted(delays(commits, samples, base))
    seen = len(measured) // BATCH
    p50 = statistics.median(measured)
    p99 = measured[int(0.99 * (len(measured) - 1))]
    print(f"rows committed: {commits[-1][1]} in {len(commits)} commits; seen: {seen} commits")
    print(f"commit -> hourly tier: p50 {p50:.2f}s, p99 {p99:.2f}s, max {measured[-1]:.2f}s")
    ratio = p99 / args.tick_seconds
    print(
        f"  p99 / tick interval ({args.tick_seconds:g}s): {ratio:.2f} (target <= 2: {ratio <= 2})"
    )
    return 0 if seen == len(commits) else 1


if __name__ == "__main__":
    sys.exit(main())
