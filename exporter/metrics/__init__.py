"""Prometheus /metrics: usage families from the rollups' all-time totals and the service's
own metrics (handler.py mounts the endpoint)."""
