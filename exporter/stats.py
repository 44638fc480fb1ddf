"""The service's own counters, shared by the request handlers and the /metrics collector.

Plain thread-safe numbers: handlers record, the collector reads them into fresh metric families
on each scrape.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web

# Upper bounds (seconds) of the HTTP request duration histogram.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class DurationHistogram:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(HTTP_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        for index, bound in enumerate(HTTP_BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1
                break
        else:
            self.buckets[-1] += 1
        self.total += seconds
        self.count += 1


class ServiceStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cache: dict[str, int] = defaultdict(int)  # result: hit | miss | error
        self.http: dict[tuple[str, str, str], DurationHistogram] = {}  # (route, method, class)

    def cache_request(self, result: str, count: int = 1) -> None:
        with self._lock:
            self.cache[result] += count

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, f"{status // 100}xx")
        with self._lock:
            self.http.setdefault(key, DurationHistogram()).observe(seconds)

    def snapshot(self) -> tuple[dict[str, int], dict[tuple[str, str, str], DurationHistogram]]:
        with self._lock:
            http = {
                key: DurationHistogram(list(h.buckets), h.total, h.count)
                for key, h in self.http.items()
            }
            return dict(self.cache), http


STATS = web.AppKey("stats", ServiceStats)
