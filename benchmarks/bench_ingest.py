"""Pushed events benchmark (not part of the test run), on PostgreSQL.

floor:   N threads, each its own psycopg connection, insert batches of the same events with a bare
         `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING` for the same time.
service: `dashboard-metrics serve` in its own process; N concurrent clients (one asyncio client
         process, bodies encoded before the clock starts) POST batches to the events endpoint.
fold:    after the service phase, one tick folds what it accepted (about a minute of ingest)
         into every tier; its duration is the figure.

Each phase runs twice: saturated (every client sends its next batch as soon as the last is
answered: the most it takes) and paced (the clients together offer --rate events/s, their sends
spread evenly over the interval: the latency at that load). Both report events/s and the p99
latency of one batch; the service's throughput is also given as a ratio of the floor's,
measured in the same run. Figures: benchmarks/README.md ("Pushed events").

  uv run python benchmarks/bench_ingest.py --seconds 60 --clients 8 --batch 1000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from aiohttp import ClientSession, TCPConnector

ROOT = Path(__file__).resolve().parent.parent
METRICS_FILE = ROOT / "examples" / "hitl-metrics.yaml"
ADMIN = os.environ.get("DASHBOARD_METRICS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
KEY = "bench-ingest-key"
WORKFLOWS = [f"wf-{i}" for i in range(20)]


def event(serial: int, prefix: str) -> dict[str, Any]:
    """The benchmark's events: reviews and completions by workflow, and review times."""
    kind = serial % 4
    labels = {"workflow": WORKFLOWS[serial % len(WORKFLOWS)]}
    if kind < 2:
        return {"id": f"{prefix}-{serial}", "metric": "hitl_reviews", "labels": labels}
    if kind == 2:
        return {"id": f"{prefix}-{serial}", "metric": "hitl_completions", "labels": labels}
    seconds = float(5 + serial % 900)
    return {
        "id": f"{prefix}-{serial}",
        "metric": "hitl_review_seconds",
        "value": seconds,
        "labels": labels,
    }


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


# -- the database ---------------------------------------------------------------------------------


def reset(name: str) -> str:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN.rsplit('/', 1)[0]}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    env = {**os.environ, "DASHBOARD_METRICS_DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "-m", "dashboard_metrics.cli.main", "migrate"], env=env, check=True
    )
    return url


def plain(url: str) -> str:
    return url.replace("+psycopg", "")


# The same rows in the same table, one bare statement per batch in autocommit: no checks, no
# partial sums, no transaction block, no HTTP. The batch travels the cheapest way we found, as
# one JSON text (psycopg's array parameters cost more client time than the insert).
FLOOR_SQL = """
INSERT INTO dashboard_metrics.pushed_events
  (organization_id, event_id, metric_name, value, event_time, model, workflow, deployment,
   received_at)
SELECT %s, e->>0, e->>1, CAST(e->>2 AS float8), CAST(e->>3 AS timestamptz), '', e->>4, '', now()
FROM json_array_elements(CAST(%s AS json)) AS e
ON CONFLICT DO NOTHING
"""


def floor_client(
    url: str, org: str, batch: int, until: float, interval: float, offset: float, out: list[Any]
) -> None:
    latencies: list[float] = []
    sent = 0
    prefix = uuid.uuid4().hex[:8]
    due = time.perf_counter() + offset
    with psycopg.connect(plain(url), autocommit=True) as conn:
        while time.perf_counter() < until:
            time.sleep(max(0.0, due - time.perf_counter()))
            due += interval
            events = [event(sent + i, prefix) for i in range(batch)]
            now = datetime.now(UTC)
            started = time.perf_counter()
            rows = [
                (e["id"], e["metric"], float(e.get("value", 1.0)), now, e["labels"]["workflow"])
                for e in events
            ]
            accepted = conn.execute(FLOOR_SQL, (org, orjson.dumps(rows).decode())).rowcount
            latencies.append(time.perf_counter() - started)
            sent += accepted
    out.append((sent, latencies))


def interval_of(rate: float, clients: int, batch: int) -> float:
    """Seconds between one client's batches for ``rate`` events/s in all (0: no pause)."""
    return clients * batch / rate if rate else 0.0


def run_floor(url: str, clients: int, batch: int, seconds: float, rate: float) -> dict[str, float]:
    results: list[Any] = []
    began = time.perf_counter()
    until = began + seconds
    interval = interval_of(rate, clients, batch)
    threads = [
        threading.Thread(
            target=floor_client,
            args=(url, f"org-{n}", batch, until, interval, interval * n / clients, results),
        )
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    events = sum(r[0] for r in results)
    latencies = [x for r in results for x in r[1]]
    return {"events_per_second": events / elapsed, "p99_ms": p99(latencies) * 1000}


# -- the service ---------------------------------------------------------------------------------


def serve(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DASHBOARD_METRICS_DATABASE_URL": url,
        "DASHBOARD_METRICS_PORT": str(port),
        "DASHBOARD_METRICS_INGEST_KEYS": f"{KEY}=*",
        "DASHBOARD_METRICS_API_KEYS": "bench-read-key=*",
        "DASHBOARD_METRICS_METRICS_FILE": str(METRICS_FILE),
        "DASHBOARD_METRICS_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard_metrics.cli.main", "serve"], env=env
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            import urllib.request

            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("serve did not start")


async def _clients(
    base: str, clients: int, bodies: list[list[bytes]], seconds: float, interval: float
) -> Any:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    latencies: list[float] = []
    accepted = 0
    failures = 0

    async def client(
        session: ClientSession, org: str, mine: list[bytes], until: float, offset: float
    ) -> None:
        nonlocal accepted, failures
        due = time.perf_counter() + offset
        for sent in itertools.count():
            # The pool again, to another organization: the same ids are new events there.
            body, target = mine[sent % len(mine)], f"{org}-{sent // len(mine)}"
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            due += interval
            if time.perf_counter() >= until:
                return
            started = time.perf_counter()
            async with session.post(
                f"{base}/api/v1/unstract/{target}/events/", data=body, headers=headers
            ) as response:
                answer = await response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                failures += 1
                continue
            accepted += orjson.loads(answer)["accepted"]

    async with ClientSession(connector=TCPConnector(limit=clients)) as session:
        began = time.perf_counter()
        until = began + seconds
        await asyncio.gather(
            *(
                client(session, f"org-{n}", bodies[n], until, interval * n / clients)
                for n in range(clients)
            )
        )
        elapsed = time.perf_counter() - began
    return accepted, elapsed, latencies, failures


def client_process(
    base: str, clients: int, batch: int, seconds: float, rate: float, queue: Any
) -> None:
    # Bodies encoded before the clock starts (200,000 events per client), sent again to other
    # organizations when a run needs more.
    per_client = 200
    bodies = [
        [
            orjson.dumps({"events": [event(b * batch + i, f"c{n}") for i in range(batch)]})
            for b in range(per_client)
        ]
        for n in range(clients)
    ]
    interval = interval_of(rate, clients, batch)
    queue.put(asyncio.run(_clients(base, clients, bodies, seconds, interval)))


def run_service(
    url: str, clients: int, batch: int, seconds: float, rate: float, port: int
) -> dict[str, float]:
    process = serve(url, port)
    try:
        queue: Any = multiprocessing.Queue()
        worker = multiprocessing.Process(
            target=client_process,
            args=(f"http://127.0.0.1:{port}", clients, batch, seconds, rate, queue),
        )
        worker.start()
        accepted, elapsed, latencies, failures = queue.get()
        worker.join()
    finally:
        process.terminate()
        process.wait()
    return {
        "events_per_second": accepted / elapsed,
        "p99_ms": p99(latencies) * 1000,
        "batches": len(latencies),
        "failed_batches": failures,
        "accepted": accepted,
    }


# -- the fold ----------------------------------------------------------------------------------


def tick_seconds(url: str) -> tuple[float, dict[str, Any]]:
    from dashboard_metrics.aggregator.engine import Aggregator
    from dashboard_metrics.core import pushed_metrics
    from dashboard_metrics.core.db import rollup_engine, source_engine
    from dashboard_metrics.core.settings import Settings

    pushed_metrics.install(str(METRICS_FILE))
    settings = Settings(database_url=url)
    rollup, source = rollup_engine(settings), source_engine(settings)
    try:
        aggregator = Aggregator(settings, rollup, source)
        started = time.perf_counter()
        result = aggregator.tick(reconcile=False, housekeeping=False)
        return time.perf_counter() - started, result.as_dict()
    finally:
        rollup.dispose()
        source.dispose()


def prepare_source(url: str) -> None:
    from dashboard_metrics.aggregator.testdata import create_source_tables
    from dashboard_metrics.core.db import source_engine
    from dashboard_metrics.core.settings import Settings

    settings = Settings(database_url=url)
    engine = source_engine(settings)
    create_source_tables(engine, settings.effective_source_schema)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--port", type=int, default=18931)
    parser.add_argument("--only", choices=["floor", "service"], default=None)
    parser.add_argument(
        "--rate",
        type=float,
        default=20_000,
        help="offered load of the paced runs, events/s in all (the saturated runs send at will)",
    )
    args = parser.parse_args()
    report: dict[str, Any] = {"clients": args.clients, "batch": args.batch, "rate": args.rate}
    shape = (args.clients, args.batch, args.seconds)
    for load, rate in (("saturated", 0.0), ("paced", args.rate)):
        if args.only in (None, "floor"):
            url = reset("bench_ingest_floor")
            report[f"floor_{load}"] = run_floor(url, *shape, rate)
        if args.only in (None, "service"):
            url = reset("bench_ingest")
            prepare_source(url)
            tick_seconds(url)  # the baseline: the fold below sees only the ingest
            report[f"service_{load}"] = run_service(url, *shape, rate, args.port)
            report[f"fold_{load}_seconds"], report[f"fold_{load}"] = tick_seconds(url)
    for load in ("saturated", "paced"):
        if f"floor_{load}" in report and f"service_{load}" in report:
            report[f"service_vs_floor_{load}"] = (
                report[f"service_{load}"]["events_per_second"]
                / report[f"floor_{load}"]["events_per_second"]
            )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
