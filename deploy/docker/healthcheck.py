"""The image's HEALTHCHECK: probe the running command's own health endpoint.

PID 1 is `dashboard-metrics <command>`: `serve` answers /healthz on DASHBOARD_METRICS_PORT,
`aggregate` on DASHBOARD_METRICS_HEALTH_PORT; the one-shot commands have no endpoint and are
healthy while they run. Standard library only; exit 0 healthy, 1 unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

PORTS = {"serve": "DASHBOARD_METRICS_PORT", "aggregate": "DASHBOARD_METRICS_HEALTH_PORT"}


def command(cmdline: bytes) -> str:
    """The dashboard-metrics command in a /proc/<pid>/cmdline (first argument not a flag)."""
    argv = [a.decode() for a in cmdline.split(b"\0") if a]
    after = next((i for i, a in enumerate(argv) if a.endswith("dashboard-metrics")), -1)
    return next((a for a in argv[after + 1 :] if not a.startswith("-")), "")


def healthy(name: str, environ: Mapping[str, str]) -> bool:
    setting = PORTS.get(name)
    if setting is None:
        return True
    port = environ.get(setting, "")
    if not port or port == "0":
        return name == "aggregate"  # aggregate without a health port has nothing to probe
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> int:
    return 0 if healthy(command(Path("/proc/1/cmdline").read_bytes()), os.environ) else 1


if __name__ == "__main__":
    sys.exit(main())
