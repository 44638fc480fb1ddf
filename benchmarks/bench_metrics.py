"""Benchmark of GET /metrics for many organizations (not part of the test run).

Fills metric_totals for N organizations x every catalogue metric, then times, in one run:
- floor: prometheus_client's generate_latest over the same families, prebuilt;
- warm scrape: GET /metrics through aiohttp while the totals version is unchanged;
- cold scrape: GET /metrics right after the totals version moved (query + build + render);
- after tick: the same a few seconds later, when the replica has prewarmed the new version;
- refresh_totals after a tick that touched one organization, and a quiet one.

    uv run python benchmarks/bench_metrics.py --orgs 1000 --runs 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.exposition import generate_latest
from sqlalchemy import update

from dashboard_metrics.aggregator.totals import refresh_totals
from dashboard_metrics.core import migrate, state
from dashboard_metrics.core.catalogue import CATALOGUE
from dashboard_metrics.core.db import rollup_engine
from dashboard_metrics.core.schema import MONTHLY, TOTALS_VERSION
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.upsert import upsert_rows
from dashboard_metrics.exporter.app import create_app
from dashboard_metrics.exporter.metrics import handler
from dashboard_metrics.exporter.metrics.config import MetricsConfig
from dashboard_metrics.exporter.metrics.handler import PREWARM_SECONDS
from dashboard_metrics.exporter.metrics.usage import FamiliesCollector, build, read_rows

NOW = datetime(2026, 3, 15, 12, 30, tzinfo=UTC)


def monthly_rows(orgs: int, months: int, rnd: random.Random) -> list[dict[str, Any]]:
    rows = []
    for index in range(orgs):
        org = f"org_{index:05d}"
        for metric in CATALOGUE:
            for m in range(months):
                month = date(2025 + (m + 3) // 12, (m + 3) % 12 + 1, 1)
                count = rnd.randrange(1, 5000)
                buckets = None
                if metric.is_histogram:
                    slots = [rnd.randrange(0, 400) for _ in range(metric.bucket_slots)]
                    count, buckets = sum(slots), json.dumps(slots)
                rows.append(
                    {
                        "organization_id": org,
                        "month": month,
                        "metric_name": metric.name,
                        "metric_type": metric.type.value,
                        # A counter's value is its number of events, as the aggregator
                        # writes it (/metrics shows the value).
                        "metric_value": (
                            float(count) * rnd.random() * 3 if metric.is_histogram else float(count)
                        ),
                        "metric_count": count,
                        "buckets": buckets,
                        "project": "default",
                        "tag": "",
                        "created_at": NOW,
                        "modified_at": NOW,
                    }
                )
    return rows


def timed(func: Any) -> float:
    began = time.perf_counter()
    func()
    return time.perf_counter() - began


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000}


async def scrapes(
    settings: Settings, runs: int, cold: bool, gzip: bool, settle: float = 0.0
) -> list[float]:
    reader = rollup_engine(settings, writer=False)
    writer = rollup_engine(settings)
    client = TestClient(TestServer(create_app(settings, rollup=reader)))
    await client.start_server()
    headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
    out = []
    try:
        await (await client.get("/metrics", headers=headers)).read()  # warm-up
        for _ in range(runs):
            if cold:
                with writer.begin() as conn:
                    version = int(state.get(conn, TOTALS_VERSION) or 0)
                    state.put(conn, {TOTALS_VERSION: version + 1}, NOW)
                await asyncio.sleep(settle)  # time for the replica's prewarming
            began = time.perf_counter()
            response = await client.get("/metrics", headers=headers)
            await response.read()
            out.append(time.perf_counter() - began)
            assert response.status == 200
    finally:
        await client.close()
        reader.dispose()
        writer.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--prewarmed-runs", type=int, default=10)
    parser.add_argument("--database-url", default="", help="default: a temporary SQLite file")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    settings = Settings(data_dir=tmp, database_url=args.database_url)
    engine = rollup_engine(settings)
    migrate.upgrade(engine)
    rnd = random.Random(1)
    with engine.begin() as conn:
        conn.execute(MONTHLY.table.delete())
        upsert_rows(
            conn,
            MONTHLY.table,
            monthly_rows(args.orgs, args.months, rnd),
            ["organization_id", "month", "metric_name", "project", "tag"],
            ["metric_value"],
        )
    with engine.begin() as conn:
        full = timed(lambda: refresh_totals(conn, NOW))
    with engine.begin() as conn:
        quiet = timed(lambda: refresh_totals(conn, datetime(2026, 3, 15, 13, tzinfo=UTC)))
    later = datetime(2026, 3, 15, 14, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            update(MONTHLY.table)
            .where(MONTHLY.table.c.organization_id == "org_00001")
            .values(metric_count=MONTHLY.table.c.metric_count + 1, modified_at=later)
        )
        one = timed(lambda: refresh_totals(conn, later))

    config = MetricsConfig.from_settings(settings)
    with engine.connect() as conn:
        families = list(build(read_rows(conn, None), config))
    samples = sum(len(f.samples) for f in families)
    floor = [timed(lambda: generate_latest(FamiliesCollector(families))) for _ in range(args.runs)]
    warm = asyncio.run(scrapes(settings, args.runs, cold=False, gzip=False))
    # The cold path alone: no prewarming competing for the GIL (it would build in parallel).
    handler.PREWARM_SECONDS = 3600.0
    cold = asyncio.run(scrapes(settings, args.runs, cold=True, gzip=False))
    handler.PREWARM_SECONDS = PREWARM_SECONDS
    settle = PREWARM_SECONDS * 2 + 1
    prewarmed = asyncio.run(scrapes(settings, args.prewarmed_runs, True, False, settle))
    warm_gzip = asyncio.run(scrapes(settings, args.runs, cold=False, gzip=True))
    engine.dispose()

    base = statistics.median(floor)
    print(
        f"dialect={engine.dialect.name} orgs={args.orgs} months={args.months} "
        f"runs={args.runs} usage samples={samples}"
    )
    print(
        f"refresh_totals: full {full * 1000:.0f} ms, quiet tick {quiet * 1000:.1f} ms, "
        f"one org changed {one * 1000:.1f} ms"
    )
    for name, data in (
        ("floor generate_latest", floor),
        ("GET /metrics warm", warm),
        ("GET /metrics cold", cold),
        ("GET /metrics after tick", prewarmed),
        ("GET /metrics warm gzip", warm_gzip),
    ):
        stats = summary(data)
        ratio = statistics.median(data) / base
        print(
            f"{name:24s} median {stats['median_ms']:7.1f} ms  p99 {stats['p99_ms']:7.1f} ms  "
            f"x{ratio:.2f} of floor"
        )


if __name__ == "__main__":
    main()
