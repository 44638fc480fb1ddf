"""Issue 9's outage findings against real processes and files: the SQLite file moved away and
restored under a running `serve`, deleted under a writer, an unmigrated rollup database, and
readiness that reports states only (the reasons go to the log)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from dashboard_metrics.aggregator.testdata import GenerateOptions, generate
from dashboard_metrics.core import migrate
from dashboard_metrics.core.db import DatabaseError, rollup_engine
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import utcnow
from dashboard_metrics.exporter.api.routes import ROUTES
from dashboard_metrics.exporter.app import create_app
from dashboard_metrics.exporter.health import rollup_status
from dashboard_metrics.exporter.schema_state import Schema, _revisions, require_schema, schema_state
from tests import processes
from tests.harness import FakeClock, Harness, utc
from tests.service_support import json_logs, served
from tests.test_api_errors import Proxy
from tests.test_api_support import seed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def sqlite_h(tmp_path: Path) -> Iterator[Harness]:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'dm.db'}")
    harness = Harness(settings, FakeClock(utc(2026, 3, 15, 12, 30)))
    yield harness
    harness.dispose()


class Serving:
    """`dashboard-metrics serve` as a real process."""

    def __init__(self, settings: Settings, **env: str) -> None:
        self.port = free_port()
        self.process = processes.start(
            settings, "serve", DASHBOARD_METRICS_PORT=str(self.port), **env
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.out = processes.LineReader(self.process.stdout)
        self.err = processes.LineReader(self.process.stderr)
        processes.wait_for(
            lambda: "serving on" in self.out.text() or self.process.poll() is not None, 60
        )
        assert self.process.poll() is None, self.err.text()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


SQLITE_FILES = ("dm.db", "dm.db-wal", "dm.db-shm")


def test_sqlite_file_moved_away_and_restored(sqlite_h: Harness, tmp_path: Path) -> None:
    h = sqlite_h
    org = seed(h, orgs=1, events=10)[0].string_id
    h.dispose()  # only the service holds the file from here on
    server = Serving(h.settings)
    api = [server.url(f"/api/v1/unstract/{org}/metrics/{path}") for path in ROUTES]
    # The seeded history (the process runs on the real clock): numbers to compare after.
    history = server.url(
        f"/api/v1/unstract/{org}/metrics/summary/?start_date=2026-02-01&end_date=2026-03-15"
    )
    api.append(history)
    try:
        assert fetch(server.url("/readyz"))[0] == 200
        before = {url: fetch(url) for url in api}
        assert all(status == 200 for status, _ in before.values()), before

        away = tmp_path / "away"
        away.mkdir()
        for name in SQLITE_FILES:
            if (tmp_path / name).exists():
                shutil.move(tmp_path / name, away / name)

        def gone() -> None:
            status, body = fetch(server.url("/readyz"))
            assert status == 503 and body["checks"]["database"] == {"status": "down"}, body

        processes.eventually(gone, timeout=10)
        time.sleep(1.2)  # past the 1 s the aggregator state may be reused (cached answers)
        for url in api:
            status, body = fetch(url)
            assert status == 503, (url, body)  # an outage, never a 500 or an empty answer
            if url.endswith("/health/"):
                assert body["healthy"] is False, body
            else:
                assert body["errors"][0]["code"] == "database_unavailable", (url, body)
        assert not (tmp_path / "dm.db").exists()  # the service created nothing at the path

        for name in SQLITE_FILES:
            if (away / name).exists():
                shutil.move(away / name, tmp_path / name)
        restored = time.monotonic()
        processes.eventually(lambda: _assert_status(server.url("/readyz"), 200), timeout=10)
        recovered = time.monotonic() - restored
        assert recovered < 5, recovered
        # Every request succeeds again, with the data of before: no connection is left on the
        # old files (the probe saw 18-22% failing with "no such table" for minutes).
        for _ in range(10):
            for url in api:
                status, body = fetch(url)
                assert status == 200, (url, body)
        assert before[history][1]["summary"]  # the comparison below is not of empty lists
        assert fetch(history) == before[history]  # same numbers as before the outage
        assert "Traceback" not in server.err.text()
    finally:
        server.stop()


def _assert_status(url: str, expected: int) -> None:
    assert fetch(url)[0] == expected


async def test_sqlite_file_deleted_under_a_writer_is_not_ready(sqlite_h: Harness) -> None:
    """`up` runs the writer and the service on one file: deleting it must not leave either
    working on the deleted file (reporting ready while writing into the void)."""
    h = sqlite_h
    org = seed(h, orgs=1, events=10)[0]
    reader = rollup_engine(h.settings, writer=False)
    try:
        app = create_app(h.settings, clock=h.clock, rollup=reader, source=h.source)
        async with TestClient(TestServer(app)) as c:
            assert (await c.get("/readyz")).status == 200
            path = Path(str(h.rollup.url.database))
            for name in SQLITE_FILES:
                (path.parent / name).unlink(missing_ok=True)
            with pytest.raises(Exception, match="no such table"):
                h.aggregator.tick()  # the writer sees the new, empty file: it fails loudly
            response = await c.get("/readyz")
            assert response.status == 503
            assert (await response.json())["checks"]["database"] == {"status": "down"}
            summary = await c.get(f"/api/v1/unstract/{org.string_id}/metrics/summary/")
            assert summary.status == 503
            migrate.upgrade(h.rollup)  # an operator migrates and backfills: ready again
            assert (await c.get("/readyz")).status == 200
    finally:
        reader.dispose()


def test_serve_refuses_an_unmigrated_rollup_database(db_settings: Settings) -> None:
    engine = rollup_engine(db_settings)
    with engine.begin() as conn:  # a database (and schema) that exists, without our tables
        table = "unrelated"
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {db_settings.rollup_schema}"))
            table = f"{db_settings.rollup_schema}.unrelated"  # not through the search_path
        conn.execute(text(f"CREATE TABLE {table} (id INTEGER)"))
    engine.dispose()
    result = processes.run(db_settings, "serve", DASHBOARD_METRICS_PORT=str(free_port()))
    assert result.returncode != 0
    assert "serving on" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "rollup schema is missing" in lines[0] and "dashboard-metrics migrate" in lines[0]


async def test_readiness_follows_the_schema_not_select_1(h: Harness) -> None:
    """Dropped schema (an unmigrated or replaced database) while running: not ready, 503s."""
    seed(h, orgs=1, events=5)
    with json_logs(logging.INFO) as logs:
        async with served(h) as server:
            assert (await server.get("/readyz")).status == 200
            table = migrate.VERSION_TABLE
            with h.rollup.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_away"))
            reply = await server.get("/readyz")
            assert reply.status == 503
            assert reply.json()["checks"]["database"] == {"status": "down"}
            with h.rollup.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table}_away RENAME TO {table}"))
            assert (await server.get("/readyz")).status == 200
    assert "rollup schema missing" in logs.getvalue()


async def test_readiness_reports_states_only(pg_h: Harness) -> None:
    """Anonymous probes learn ok/degraded/down; hosts, ports and driver errors go to the log."""
    h = pg_h
    org = seed(h, orgs=1, events=5)[0].string_id
    proxy = Proxy()
    await proxy.start()
    url = h.settings.rollup_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    settings = replace(h.settings, database_url=url, redis_url=dead_redis)
    reader = rollup_engine(settings, writer=False)
    database = url.rsplit("/", 1)[1]
    secret_words = ("127.0.0.1", str(proxy.port), dead_redis.split(":")[2], database, "rror")
    try:
        with json_logs(logging.INFO) as logs:
            app = create_app(settings, clock=h.clock, rollup=reader, source=h.source)
            async with TestClient(TestServer(app)) as c:
                ready = await c.get("/readyz")
                assert ready.status == 200
                assert await ready.json() == {
                    "status": "degraded",
                    "checks": {"database": {"status": "ok"}, "cache": {"status": "degraded"}},
                }
                await proxy.stop()
                bodies = []
                for path in ("/readyz", f"/api/v1/unstract/{org}/metrics/health/"):
                    response = await c.get(path)
                    assert response.status == 503
                    bodies.append(await response.text())
                assert json.loads(bodies[0])["checks"] == {
                    "database": {"status": "down"},
                    "cache": {"status": "degraded"},
                }
                assert json.loads(bodies[1])["checks"] == {
                    "database": {"status": "down"},
                    "cache": {"status": "degraded"},
                }
                for body in bodies:
                    for word in secret_words:
                        assert word not in body, (word, body)
        logged = logs.getvalue()
        assert "database check: down" in logged and "cache check: degraded" in logged
        assert str(proxy.port) in logged  # the reason is in the log, for the operator
    finally:
        reader.dispose()
        if proxy.server is not None:
            proxy.server.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_stays_flat_under_unique_parameter_streams(tmp_path: Path) -> None:
    """The probe grew RSS by 104 MB with 1,000 `live-series/?junk=<i>` requests: now unknown
    parameters are refused and distinct valid ones fill byte-bounded caches."""
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'dm.db'}")
    h = Harness(settings, FakeClock(now))  # the served process runs on the real clock
    try:
        options = GenerateOptions(orgs=1, days=9, records_per_day=150, seed=3)
        org = generate(h.source, None, options, now).organizations[0]
        h.backfill(days=10)
    finally:
        h.dispose()
    bound = 2 * 1024 * 1024
    server = Serving(settings, DASHBOARD_METRICS_CACHE_MAX_BYTES=str(bound))
    base = server.url(f"/api/v1/unstract/{org}/metrics/")
    week = timedelta(days=7)
    served_bytes = 0

    def stream(start: int, count: int) -> None:
        nonlocal served_bytes
        for i in range(start, start + count):
            # A distinct range each time: distinct cache keys for every layer.
            first = now - week - timedelta(hours=i % 160)
            last = first + week - timedelta(hours=i // 160)
            bounds = f"start_date={first:%Y-%m-%dT%H:00:00Z}&end_date={last:%Y-%m-%dT%H:00:00Z}"
            minute = now - timedelta(minutes=i)
            urls = [
                f"{base}series/?granularity=hour&{bounds}",
                f"{base}summary/?{bounds}",
                f"{base}live-series/?granularity=hour&junk={i}",
                f"{base}recent-activity/?junk={i}",
            ]
            if i % 4 == 0:
                urls.append(
                    f"{base}live-series/?granularity=hour&end_date={minute:%Y-%m-%dT%H:%M:00Z}"
                )
            for url in urls:
                try:
                    with urllib.request.urlopen(url, timeout=30) as response:
                        served_bytes += len(response.read())
                except urllib.error.HTTPError as error:
                    assert error.code == 400, (url, error.code)
                    served_bytes += len(error.read())

    try:
        stream(0, 60)  # warm up: caches fill to their bound, allocator arenas settle
        before = rss_kib(server.process.pid)
        served_bytes = 0
        stream(60, 320)
        after = rss_kib(server.process.pid)
    finally:
        server.stop()
    growth_mib = (after - before) / 1024
    # What was served would have stayed in unbounded caches: many times the bound and the
    # allowed growth, so the test would fail without the bound.
    assert served_bytes > 15 * bound, served_bytes
    print(f"RSS {before} -> {after} KiB ({growth_mib:+.1f} MiB) after {served_bytes} bytes served")
    assert growth_mib < 8, (before, after, served_bytes)


def test_aggregate_health_endpoint_reports_states_only(h: Harness) -> None:
    """The sibling of /readyz on `aggregate --health-port`: no error text, no versions."""
    import threading

    from dashboard_metrics.aggregator import healthserver
    from dashboard_metrics.aggregator.daemon import Daemon

    daemon = Daemon(h.aggregator, threading.Event())
    daemon.role = "active"
    daemon.failures = 3
    daemon.last_error = "connection to server at 10.1.2.3, port 6543 failed: refused"
    port = free_port()
    server = healthserver.start(daemon, "127.0.0.1", port)
    try:
        for path, status in (("/readyz", 503), ("/healthz", 200), ("/nope", 404)):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as response:
                    code, headers, raw = response.status, response.headers, response.read()
            except urllib.error.HTTPError as error:
                code, headers, raw = error.code, error.headers, error.read()
            assert code == status
            assert headers["Server"] == "dashboard-metrics", headers["Server"]
            assert headers["Content-Type"] == "application/json"
            assert "10.1.2.3" not in raw.decode() and "6543" not in raw.decode()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(b"GET /readyz HTTP/2.0\r\n\r\n")
            answer = conn.makefile("rb").read()
        # Malformed requests are answered by http.server itself: JSON, not its HTML page.
        assert json.loads(answer.split(b"\r\n\r\n")[-1]) == {"status": "error", "code": 505}
    finally:
        server.shutdown()


def test_schema_revisions_older_refused_newer_served(h: Harness) -> None:
    """An older known revision is unmigrated for this version (refused, not ready); an unknown,
    newer one is a rolling upgrade that migrated first (served, with a warning)."""
    table = migrate.VERSION_TABLE
    head = migrate.head_revision()
    assert head is not None
    known = sorted(_revisions() - {head})
    assert known, "needs an older migration to test against"

    def stamp(revision: str) -> None:
        with h.rollup.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET version_num = :v"), {"v": revision})

    reader = rollup_engine(h.settings, writer=False)
    try:
        stamp(known[0])
        assert schema_state(reader) is Schema.OUTDATED
        with pytest.raises(DatabaseError, match="rollup schema is outdated"):
            require_schema(reader)
        assert rollup_status(reader)[0] == "down"
        stamp("ffffffffffff")
        assert schema_state(reader) is Schema.NEWER
        with json_logs(logging.WARNING) as logs:
            require_schema(reader)
        assert "newer than this version" in logs.getvalue()
        assert rollup_status(reader) == ("ok", "")
        stamp(head)
        assert schema_state(reader) is Schema.CURRENT
    finally:
        reader.dispose()


def test_an_unreachable_database_at_start_is_an_outage_not_a_refusal(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    )
    engine = rollup_engine(settings, writer=False)
    try:
        with json_logs(logging.WARNING) as logs:
            require_schema(engine)  # no exception: serve starts and reports not ready
        assert "unreachable at start" in logs.getvalue()
        assert rollup_status(engine)[0] == "down"
    finally:
        engine.dispose()
