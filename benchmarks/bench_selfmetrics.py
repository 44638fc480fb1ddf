"""The service's own request metrics on the scrape path: the locked counters of
exporter/stats.py (with the family builders of exporter/metrics/service.py) against the same
metrics as prometheus_client Counter/Histogram in a per-app CollectorRegistry (the way
prometheus-aioexporter keeps one per exporter; copied below as the candidate). Not part of the
test run.

Both are filled with the same requests: --routes route templates x GET/POST x 2xx/4xx/5xx, each
label set observed a few times, plus the cache results, and must expose the same samples.
Timed, best of --runs per round with the candidates taking turns run by run (a burst of load
from elsewhere hits both sides of a ratio alike), the figure the median of the per-round ratios
(over 1: the candidate is faster):
- collect: from the recorded numbers to the families /metrics renders;
- scrape: the same, rendered as the classic text format and as OpenMetrics;
- record: one http_request() (what every request pays).

    uv run python benchmarks/bench_selfmetrics.py --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from dashboard_metrics.exporter.metrics import service
from dashboard_metrics.exporter.metrics.usage import FamiliesCollector
from dashboard_metrics.exporter.stats import HTTP_BUCKETS, ServiceStats

PREFIX = service.METRIC_PREFIX
NOW = datetime(2026, 3, 1, tzinfo=UTC)

# -- the candidate: prometheus_client metrics in a registry of the app's own -------------------

disable_created_metrics()  # /metrics has no *_created series


class RegistryStats:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._cache = Counter(
            f"{PREFIX}_cache_requests_total",
            "JSON API cache lookups of this service replica, by result.",
            ["result"],
            registry=self.registry,
        )
        for result in service.CACHE_RESULTS:
            self._cache.labels(result)
        self._http = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request handling time of this service replica, by route template.",
            ["route", "method", "status_class"],
            unit="seconds",
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )

    def cache_request(self, result: str, count: int = 1) -> None:
        self._cache.labels(result).inc(count)

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._http.labels(route, method, f"{status // 100}xx").observe(seconds)


def locked_families(stats: ServiceStats) -> list[Metric]:
    """What the /metrics handler does today (database down: no tick families on either side)."""
    cache, http = stats.snapshot()
    inputs = service.ServiceInputs(False, {}, cache, http, NOW, "bench")
    return service.families(inputs)


def registry_families(stats: RegistryStats) -> list[Metric]:
    info_and_up = service.families(service.ServiceInputs(False, {}, {}, {}, NOW, "bench"))[:2]
    return [*info_and_up, *stats.registry.collect()]


# -- the measurement ----------------------------------------------------------------------------


def fill(stats: Any, routes: int, per_label: int) -> None:
    for r in range(routes):
        for method in ("GET", "POST"):
            for status in (200, 404, 500):
                for i in range(per_label):
                    stats.http_request(f"/api/v1/route{r}/{{org_id}}/", method, status, i * 0.003)
    for result in service.CACHE_RESULTS:
        stats.cache_request(result, 5)


def best(fn: Callable[[], Any], batch: int) -> float:
    began = time.perf_counter()
    for _ in range(batch):
        fn()
    return (time.perf_counter() - began) / batch


def render(families: list[Metric]) -> bytes:
    collector = FamiliesCollector(families)
    return generate_latest(collector) + generate_openmetrics(collector)  # type: ignore[arg-type]


def samples(families: list[Metric]) -> set[str]:
    text = generate_latest(FamiliesCollector(families)).decode()  # type: ignore[arg-type]
    return {line for line in text.splitlines() if not line.startswith("#")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=20, help="route templates (x2 x3 sets)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    old, new = ServiceStats(), RegistryStats()
    fill(old, args.routes, 7)
    fill(new, args.routes, 7)
    assert samples(locked_families(old)) == samples(registry_families(new)), "different samples"
    size = len(render(locked_families(old)))
    print(f"{args.routes * 6} label sets, {size:,} B rendered (text + OpenMetrics, same samples)")
    record = ("/api/v1/route3/{org_id}/", "GET", 200, 0.02)
    candidates: dict[str, tuple[Callable[[], Any], int]] = {
        "collect: locked counters": (lambda: locked_families(old), 50),
        "collect: prometheus_client": (lambda: registry_families(new), 50),
        "scrape: locked counters": (lambda: render(locked_families(old)), 20),
        "scrape: prometheus_client": (lambda: render(registry_families(new)), 20),
        "record: locked counters": (lambda: old.http_request(*record), 20000),
        "record: prometheus_client": (lambda: new.http_request(*record), 20000),
    }
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for round_no in range(args.rounds):
        kept = dict.fromkeys(candidates, float("inf"))
        for _ in range(args.runs):
            for name, (fn, batch) in candidates.items():
                kept[name] = min(kept[name], best(fn, batch))
        for name in candidates:
            seconds[name].append(kept[name])
        print(
            f"round {round_no}: "
            + ", ".join(f"{name} {seconds[name][-1] * 1e6:.1f} us" for name in candidates)
        )
    for what in ("collect", "scrape", "record"):
        base, name = f"{what}: locked counters", f"{what}: prometheus_client"
        ratios = [b / o for b, o in zip(seconds[base], seconds[name], strict=True)]
        print(
            f"{what}: prometheus_client median {statistics.median(seconds[name]) * 1e6:.1f} us "
            f"against {statistics.median(seconds[base]) * 1e6:.1f} us: "
            f"x{statistics.median(ratios):.2f} as fast "
            f"(rounds {min(ratios):.2f}..{max(ratios):.2f}; best of all rounds "
            f"{min(seconds[name]) * 1e6:.1f} us against {min(seconds[base]) * 1e6:.1f} us)"
        )


if __name__ == "__main__":
    main()
