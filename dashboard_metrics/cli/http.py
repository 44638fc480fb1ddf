"""Running the HTTP service: bind the port first, so a taken port is one line before anything
else happens, and say "up" only once the service accepts connections."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from aiohttp import web

from dashboard_metrics.cli.embedded import require_existing
from dashboard_metrics.cli.errors import CommandError
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.app import create_app
from dashboard_metrics.exporter.serve import check_bind
from dashboard_metrics.exporter.server import run_app


def base_url(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def listen(settings: Settings) -> socket.socket:
    """A listening socket on HOST:PORT, or a one-line error naming the flag to change."""
    host, port = settings.host, settings.port
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise CommandError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"port {port} on {host} is already in use (another dashboard-metrics?): "
                "choose another with --port (DASHBOARD_METRICS_PORT)"
            ) from None
        raise CommandError(
            f"cannot listen on {host}:{port}: {exc.strerror} (--host, --port)"
        ) from None
    sock.set_inheritable(False)
    return sock


def run(app: web.Application, sock: socket.socket, on_ready: Callable[[], None]) -> None:
    """Serve ``app`` on ``sock`` until SIGINT/SIGTERM; ``on_ready`` runs once it accepts."""
    run_app(app, sock=sock, on_ready=on_ready)  # aiohttp's, with the service's error answers


def serve(settings: Settings) -> int:
    check_bind(settings)  # the bind rule first, then: serving never creates a database
    require_existing(settings)
    sock = listen(settings)
    app = create_app(settings)
    base = base_url(settings)
    run(app, sock, lambda: print(f"serving on {base} (index page {base}/)", flush=True))
    return 0
