"""`dashboard-metrics up` on a fresh directory: demo data, rollups, /healthz; Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from sqlalchemy import create_engine, func, select

from aggregator.rollup_tables import TIERS
from tests.processes import LineReader, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


def test_up_fills_the_rollups_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_METRICS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard_metrics.cli", "up", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = LineReader(process.stdout)  # type: ignore[arg-type]
    LineReader(process.stderr)  # type: ignore[arg-type]
    try:
        wait_for(lambda: "is up" in out.text() or process.poll() is not None, timeout=120)
        assert process.poll() is None, out.text()
        wait_for(lambda: f"http://127.0.0.1:{port}/healthz" in out.text(), timeout=10)

        def healthy() -> bool:
            try:
                return get(f"http://127.0.0.1:{port}/healthz")[0] == 200
            except OSError:
                return False

        wait_for(healthy, timeout=30)
        status, body = get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200 and body["checks"]["database"]["status"] == "ok"  # type: ignore[index]
        engine = create_engine(
            f"sqlite:///{tmp_path / '.dashboard-metrics' / 'dashboard-metrics.db'}"
        )
        with engine.connect() as conn:
            for tier in TIERS.values():
                assert conn.execute(select(func.count()).select_from(tier.table)).scalar()
        engine.dispose()
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
