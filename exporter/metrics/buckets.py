"""Histogram buckets as Prometheus exposes them: cumulative counts under their `le` labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.utils import floatToGoString


def le_labels(bounds: Iterable[float]) -> list[str]:
    """The `le` label of each bucket, the +Inf bucket last."""
    return [*map(floatToGoString, bounds), "+Inf"]


def cumulative(labels: Sequence[str], per_bucket: Sequence[int]) -> list[tuple[str, int]]:
    """(le, events at or below it) for per-bucket counts, one per label; the last is the total."""
    out: list[tuple[str, int]] = []
    running = 0
    for label, count in zip(labels, per_bucket, strict=True):
        running += count
        out.append((label, running))
    return out
