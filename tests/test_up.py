"""`dashboard-metrics up` as a newcomer runs it: bind first, a summary for people, the numbers
in a browser and a terminal within a minute, the organizations again on restart, Ctrl-C stops it.
The embedded default (SQLite in the working directory) and the same on PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sqlalchemy import func, select

from dashboard_metrics.cli import organizations
from dashboard_metrics.core.db import rollup_engine, source_engine
from dashboard_metrics.core.schema import TIERS
from dashboard_metrics.core.settings import Settings
from tests.processes import LineReader, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, accept: str = "application/json") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode()


def env_for(settings: Settings | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_METRICS_")}
    if settings is not None:
        env["DASHBOARD_METRICS_DATABASE_URL"] = settings.rollup_url
    return env


class Up:
    def __init__(self, cwd: Path, port: int, settings: Settings | None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dashboard_metrics", "up", "--port", str(port)],
            cwd=cwd,
            env=env_for(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out = LineReader(self.process.stdout)  # type: ignore[arg-type]
        self.err = LineReader(self.process.stderr)  # type: ignore[arg-type]

    def wait_up(self) -> str:
        wait_for(lambda: "is up" in self.out.text() or self.process.poll() is not None, 120)
        assert self.process.poll() is None, self.out.text() + self.err.text()[-2000:]
        wait_for(lambda: "export ORG=" in self.out.text(), 10)
        return self.out.text()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert self.process.wait(timeout=30) == 0
        assert "Traceback" not in self.err.text()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _settings_for(db_settings: Settings, tmp_path: Path) -> tuple[Settings | None, Settings]:
    """(what the process gets in its environment, what the test reads with)."""
    if db_settings.rollup_url.startswith("sqlite"):
        embedded = Settings(data_dir=tmp_path / ".dashboard-metrics")
        return None, embedded
    return db_settings, db_settings


def test_up_summary_numbers_in_a_minute_and_restart(db_settings: Settings, tmp_path: Path) -> None:
    given, reading = _settings_for(db_settings, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    up = Up(tmp_path, port, given)
    try:
        out = up.wait_up()
        # "up" is said only once the service accepts connections: no waiting here.
        status, index = get(f"{base}/")
        assert status == 200
        source, rollup = source_engine(reading), rollup_engine(reading, writer=False)
        try:
            orgs = organizations.in_source(source)
            with rollup.connect() as conn:
                for tier in TIERS.values():
                    assert conn.execute(select(func.count()).select_from(tier.table)).scalar()
        finally:
            source.dispose()
            rollup.dispose()
        assert len(orgs) == 3
        for org, name in orgs.items():
            assert f"  {org}  {name}" in out
        assert "{'" not in out and "revision" not in out and "<org_id>" not in out
        exported = re.search(r"export ORG=(\S+)", out)
        assert exported and exported.group(1) in orgs
        org = exported.group(1)
        assert f"{base}/api/v1/unstract/{org}/metrics/overview/" in out
        assert re.search(r"loaded: [\d,]+ workflow executions and [\d,]+ LLM calls", out)
        assert {o["organization_id"] for o in json.loads(index)["organizations"]} == set(orgs)
        status, overview = get(f"{base}/api/v1/unstract/{org}/metrics/overview/")
        assert status == 200 and json.loads(overview)["totals"]
        report = subprocess.run(
            [sys.executable, "-m", "dashboard_metrics", "report"],
            cwd=tmp_path,
            env=env_for(given),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert report.returncode == 0, report.stderr
        assert all(org in report.stdout for org in orgs)
        assert time.monotonic() - started < 60  # browser and terminal within a minute
        up.stop()
        again = Up(tmp_path, port, given)  # the same port is free again at once
        try:
            out = again.wait_up()
            assert "generating demo data" not in out
            assert all(f"  {o}  " in out for o in orgs) and f"export ORG={org}" in out
            again.stop()
        finally:
            again.kill()
    finally:
        up.kill()


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_taken_port_is_one_line_before_anything_else(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        started = time.monotonic()
        up = subprocess.run(
            [sys.executable, "-m", "dashboard_metrics", "up", "--port", port],
            cwd=tmp_path,
            env=env_for(None),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert time.monotonic() - started < 15
        assert up.returncode == 1 and "is up" not in up.stdout
        line = _one_line(up)
        assert f"port {port} " in line and "--port" in line
        assert not (tmp_path / ".dashboard-metrics").exists()  # nothing done before binding
        migrate = subprocess.run(
            [sys.executable, "-m", "dashboard_metrics", "migrate"],
            cwd=tmp_path,
            env=env_for(None),
            capture_output=True,
            timeout=60,
        )
        assert migrate.returncode == 0
        serve = subprocess.run(
            [sys.executable, "-m", "dashboard_metrics", "serve", "--port", port],
            cwd=tmp_path,
            env=env_for(None),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert serve.returncode == 1 and "serving" not in serve.stdout
        assert f"port {port} " in _one_line(serve)
