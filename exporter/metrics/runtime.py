"""The process and platform families (`process_*`, `python_*`) of this serve replica.

Each app owns a registry of prometheus_client's standard collectors, so an app built in a test
or the embedded `up` process exposes its own, and nothing is shared through the global REGISTRY.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import Metric


def registry() -> CollectorRegistry:
    runtime = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=runtime)
    PlatformCollector(registry=runtime)
    GCCollector(registry=runtime)
    return runtime


def families(runtime: CollectorRegistry) -> list[Metric]:
    return list(runtime.collect())
