"""Where the HTTP service may bind: without API keys, only loopback unless told otherwise.

Running the service (`serve`, `up`) lives with the command line (dashboard_metrics/).
"""

from __future__ import annotations

import ipaddress
import socket

from dashboard_metrics.core.settings import ConfigError, Settings


def is_loopback(host: str) -> bool:
    if host in {"localhost", ""}:
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


def check_bind(settings: Settings) -> None:
    """Without API keys the JSON API is open: only loopback, unless explicitly allowed."""
    if (
        settings.api_keys
        or settings.forward_auth_url
        or settings.allow_unauthenticated
        or is_loopback(settings.host)
    ):
        return
    raise ConfigError(
        f"refusing to serve {settings.host} without DASHBOARD_METRICS_API_KEYS or "
        "DASHBOARD_METRICS_FORWARD_AUTH_URL; set keys, bind "
        "127.0.0.1, or pass --allow-unauthenticated (DASHBOARD_METRICS_ALLOW_UNAUTHENTICATED=1)"
    )
