"""A tiny HTTP health endpoint for `aggregate` (probes for Kubernetes and systemd watchdogs).

/healthz: the daemon loop is alive. /readyz: this process is a standby waiting on the lock, or
the active writer whose last tick succeeded recently; 503 otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dashboard_metrics.aggregator.daemon import Daemon


def status(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    stale_after = 3 * daemon.aggregator.settings.tick_seconds + 60
    age = None if daemon.last_success is None else time.monotonic() - daemon.last_success
    ready = daemon.role == "standby" or (age is not None and age <= stale_after)
    body: dict[str, Any] = {
        "status": "ready" if ready else "unavailable",
        "role": daemon.role,
        "seconds_since_last_successful_tick": None if age is None else round(age, 3),
        "failures": daemon.failures,
    }
    # States only: the last error names hosts and ports, and is in the log already.
    return (200 if ready else 503), body


def start(daemon: Daemon, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        # Errors the server answers itself (malformed requests) are JSON too.
        error_content_type = "application/json"
        error_message_format = '{"status": "error", "code": %(code)d}'

        def version_string(self) -> str:
            return "dashboard-metrics"  # no Python or library versions on the wire

        def do_GET(self) -> None:
            if self.path == "/healthz":
                code, body = 200, {"status": "ok", "role": daemon.role}
            elif self.path == "/readyz":
                code, body = status(daemon)
            else:
                code, body = 404, {"status": "not found"}
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes every few seconds would drown the logs

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="aggregate-health", daemon=True).start()
    return server
