"""Validation on every endpoint (400 naming the parameter), response shapes equal to the
Unstract's, source-table endpoints against naive computations, and a rollup database outage."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from dataclasses import replace
from datetime import datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.db import rollup_engine
from dashboard_metrics.exporter.api.context import API
from dashboard_metrics.exporter.api.params import ceil_hour
from dashboard_metrics.exporter.app import create_app
from tests.harness import Harness
from tests.test_api_support import client, seed

DATED = ["summary/", "series/", "overview/", "live-summary/", "live-series/"]
BAD: list[tuple[str, dict[str, str], str]] = [
    *((p, {"start_date": "yesterday"}, "start_date") for p in DATED),
    *((p, {"end_date": "2026-13-01"}, "end_date") for p in DATED),
    *((p, {"start_date": "2026-03-10", "end_date": "2026-03-01"}, "start_date") for p in DATED),
    # Over 365 days: a 400 except on overview/, which answers any range (issue 12).
    *((p, {"start_date": "2024-01-01"}, "start_date") for p in DATED if p != "overview/"),
    *((p, {"tz": "Mars/Olympus"}, "tz") for p in DATED),
    *((p, {"refresh": "maybe"}, "refresh") for p in DATED),
    ("summary/", {"source": "weekly"}, "source"),
    ("series/", {"granularity": "minute"}, "granularity"),
    ("live-series/", {"granularity": "year"}, "granularity"),
    ("live-summary/", {"source": "nope"}, "source"),
    ("recent-activity/", {"limit": "0"}, "limit"),
    ("recent-activity/", {"limit": "ten"}, "limit"),
    ("workflow-token-usage/", {"deployment_type": "cron"}, "deployment_type"),
    ("workflow-token-usage/", {"start_date": "2026-03-16"}, "start_date"),  # after end
    ("", {"page": "0"}, "page"),
    ("", {"page_size": "5000"}, "page_size"),
    ("", {"ordering": "cost"}, "ordering"),
    ("", {"page": "99"}, "page"),
    ("summary/", {"metric_name": "x" * 65}, "metric_name"),
]


async def test_invalid_parameters_are_400_naming_them(h: Harness) -> None:
    h.org()
    async with client(h) as c:
        for path, query, attr in BAD:
            response = await c.get(f"/api/v1/unstract/org_0001/metrics/{path}", params=query)
            body = await response.json()
            assert response.status == 400, (path, query, body)
            assert body["type"] == "validation_error"
            assert body["errors"][0]["code"] == "invalid"
            assert body["errors"][0]["attr"] == attr, (path, query, body)
            assert isinstance(body["errors"][0]["detail"], str)
            assert body["message"] == body["errors"][0]["detail"], (path, query, body)


NUM = (int, float)
SHAPES: dict[str, dict[str, Any]] = {
    "summary/": {
        "start_date": str,
        "end_date": str,
        "source": str,
        "summary": [
            {
                "metric_name": str,
                "metric_type": str,
                "total_value": NUM,
                "total_count": int,
                "average_value": NUM,
                "min_value": NUM,
                "max_value": NUM,
            }
        ],
    },
    "series/": {
        "start_date": str,
        "end_date": str,
        "granularity": str,
        "source": str,
        "series": [
            {
                "metric_name": str,
                "metric_type": str,
                "project": str,
                "tag": str,
                "data": [{"timestamp": str, "value": NUM, "count": int}],
                "total_value": NUM,
                "total_count": int,
            }
        ],
    },
    "overview/": {
        "period": {"start_date": str, "end_date": str, "days": int},
        "totals": [{"metric_name": str, "total_value": NUM, "total_count": int}],
        "daily_trend": [{"date": str, "metrics": dict}],
    },
    "live-summary/": {
        "start_date": str,
        "end_date": str,
        "source": str,
        "summary": [
            {
                "metric_name": str,
                "metric_type": str,
                "total_value": NUM,
                "total_count": int,
                "average_value": NUM,
                "min_value": NUM,
                "max_value": NUM,
            }
        ],
    },
    "live-series/": {
        "start_date": str,
        "end_date": str,
        "granularity": str,
        "source": str,
        "series": [
            {
                "metric_name": str,
                "metric_type": str,
                "data": [{"timestamp": str, "value": NUM}],
                "total_value": NUM,
            }
        ],
    },
    "recent-activity/": {
        "activity": [
            {
                "id": str,
                "execution_id": str,
                "type": str,
                "file_name": str,
                "status": str,
                "workflow_name": str,
                "created_at": str,
                "execution_time": (float, type(None)),
                "total_tokens": int,
                "cost": NUM,
            }
        ],
        "limit": int,
    },
    "workflow-token-usage/?deployment_type=task": {
        "start_date": str,
        "end_date": str,
        "deployment_type": str,
        "range_truncated": bool,
        "deployments": [
            {
                "deployment_id": str,
                "deployment_name": str,
                "total_tokens": int,
                "total_cost": NUM,
                "call_count": int,
                "execution_count": int,
                "completed_executions": int,
                "failed_executions": int,
                "total_pages_processed": int,
                "first_execution_at": str,
                "last_execution_at": str,
            }
        ],
    },
    "health/": {
        "healthy": bool,
        "checks": {"database": {"status": str}, "cache": {"status": str}},
        "timestamp": str,
    },
    "": {
        "count": int,
        "next": (str, type(None)),
        "previous": (type(None), str),
        "results": [
            {
                "id": str,
                "timestamp": str,
                "metric_name": str,
                "metric_type": str,
                "metric_value": NUM,
                "metric_count": int,
                "project": str,
                "tag": str,
                "created_at": str,
            }
        ],
    },
}


def conforms(value: Any, shape: Any, where: str) -> None:
    if isinstance(shape, dict) and shape is not dict:
        assert isinstance(value, dict) and set(value) == set(shape), (where, value)
        for key, sub in shape.items():
            conforms(value[key], sub, f"{where}.{key}")
    elif isinstance(shape, list):
        assert isinstance(value, list) and value, (where, "empty list: seed more data")
        for item in value:
            conforms(item, shape[0], f"{where}[]")
    else:
        assert isinstance(value, shape) and not (shape is int and isinstance(value, bool)), where


async def test_response_shapes_are_unstracts(h: Harness) -> None:
    org = seed(h, events=20)[0].string_id
    async with client(h) as c:
        for path, shape in SHAPES.items():
            response = await c.get(f"/api/v1/unstract/{org}/metrics/{path}")
            assert response.status == 200
            conforms(await response.json(), shape, path or "list")


def rows(h: Harness, table: Any) -> list[dict[str, Any]]:
    with h.source.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table))]


async def test_recent_activity_and_token_usage_match_naive_reads(h: Harness) -> None:
    org = seed(h, events=25)[0]
    executions = {r["id"]: r for r in rows(h, st.workflow_execution)}
    mine = {e for e, r in executions.items() if r["workflow_id"] == org.workflow_id}
    files = [r for r in rows(h, st.workflow_file_execution) if r["workflow_execution_id"] in mine]
    files.sort(key=lambda r: (-r["created_at"].timestamp(), r["id"]))
    usage = rows(h, st.usage)
    # Unstract's mapping: TASK pipelines (and manual runs) are "workflow".
    kinds = {org.etl_id: "etl", org.api_id: "api"}
    async with client(h) as c:
        url = f"/api/v1/unstract/{org.string_id}/metrics/recent-activity/?limit=50"
        activity = (await (await c.get(url)).json())["activity"]
        assert [a["id"] for a in activity] == [f["id"] for f in files[:50]]
        for item in activity:
            pipeline = executions[item["execution_id"]]["pipeline_id"]
            assert item["type"] == kinds.get(pipeline, "workflow")
            mine_usage = [u for u in usage if u["run_id"] == item["id"]]
            assert item["total_tokens"] == sum(u["total_tokens"] for u in mine_usage)
            assert math.isclose(
                item["cost"], round(sum(u["cost_in_dollars"] for u in mine_usage), 4)
            )
        assert {"etl", "api", "workflow"} == {a["type"] for a in activity}
        assert any(executions[a["execution_id"]]["pipeline_id"] == org.task_id for a in activity)

        pages = rows(h, st.page_usage)
        for kind, dep_id in (("etl", org.etl_id), ("TASK", org.task_id), ("api", org.api_id)):
            url = f"/api/v1/unstract/{org.string_id}/metrics/workflow-token-usage/"
            body = await (await c.get(url, params={"deployment_type": kind})).json()
            assert body["range_truncated"] is False and body["deployment_type"] == kind.upper()
            lo = ceil_hour(datetime.fromisoformat(body["start_date"]))
            hi = ceil_hour(datetime.fromisoformat(body["end_date"]))
            runs = [
                e
                for e in executions.values()
                if e["pipeline_id"] == dep_id and lo <= e["created_at"] < hi
            ]
            [entry] = body["deployments"]
            assert entry["deployment_id"] == dep_id
            assert entry["execution_count"] == len(runs) > 0
            assert entry["completed_executions"] == sum(r["status"] == "COMPLETED" for r in runs)
            assert entry["failed_executions"] == sum(r["status"] == "ERROR" for r in runs)
            run_ids = {r["id"] for r in runs}
            calls = [u for u in usage if u["execution_id"] in run_ids and u["usage_type"] == "llm"]
            assert entry["call_count"] == len(calls)
            assert entry["total_tokens"] == sum(u["total_tokens"] for u in calls)
            file_ids = {
                f["id"]
                for f in rows(h, st.workflow_file_execution)
                if f["workflow_execution_id"] in run_ids
            }
            assert entry["total_pages_processed"] == sum(
                p["pages_processed"] for p in pages if p["run_id"] in file_ids
            )


class Proxy:
    """A TCP proxy to PostgreSQL that the test can take down and bring back."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)
            self.writers += [writer, up_writer]
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        self.server = await asyncio.start_server(handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        await self.server.wait_closed()


async def test_rollup_database_outage_is_503_and_recovers(pg_h: Harness) -> None:
    # The outage is a TCP proxy in front of PostgreSQL that the test stops and restarts.
    h = pg_h
    org = seed(h, events=5)[0].string_id
    proxy = Proxy()
    await proxy.start()
    url = h.settings.rollup_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    settings = replace(h.settings, database_url=url)
    rollup = rollup_engine(settings, writer=False)
    app = create_app(settings, clock=h.clock, rollup=rollup, source=h.source)
    app[API].state_ttl = 0.0
    paths = ["summary/", "series/", "overview/", "", "health/"]
    try:
        async with TestClient(TestServer(app)) as c:
            for path in paths:
                assert (await c.get(f"/api/v1/unstract/{org}/metrics/{path}")).status == 200
            await proxy.stop()
            for path in paths:
                response = await c.get(f"/api/v1/unstract/{org}/metrics/{path}")
                body = await response.json()
                assert response.status == 503, (path, body)
                assert "Traceback" not in str(body)
            assert (await c.get("/readyz")).status == 503
            await proxy.start()
            for path in paths:
                assert (await c.get(f"/api/v1/unstract/{org}/metrics/{path}")).status == 200
            assert (await c.get("/readyz")).status == 200
    finally:
        rollup.dispose()
        if proxy.server is not None:
            proxy.server.close()
