"""Prometheus /metrics: usage families from the rollups' all-time totals and the service's
own metrics, built fresh per scrape by a custom collector."""

from exporter.metrics.handler import setup
from exporter.metrics.timing import http_timing

__all__ = ["http_timing", "setup"]
