"""In-memory rollup values: what one bucket of one metric holds, and their arithmetic."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

DEFAULT_PROJECT = "default"
DEFAULT_TAG = ""

Period = datetime | date


class RowKey(NamedTuple):
    organization_id: str
    period: Period
    metric_name: str
    project: str = DEFAULT_PROJECT
    tag: str = DEFAULT_TAG


@dataclass(frozen=True)
class Agg:
    """Sum of event values, number of events and per-bucket event counts (histograms)."""

    value: float
    count: int
    buckets: tuple[int, ...] | None = None

    def __add__(self, other: Agg) -> Agg:
        return Agg(self.value + other.value, self.count + other.count, _zip(self, other, 1))

    def __sub__(self, other: Agg) -> Agg:
        return Agg(self.value - other.value, self.count - other.count, _zip(self, other, -1))

    def same_as(self, other: Agg | None) -> bool:
        """Equal up to float summation order (sums of the same events computed differently)."""
        return (
            other is not None
            and self.count == other.count
            and self.buckets == other.buckets
            and math.isclose(self.value, other.value, rel_tol=1e-12, abs_tol=1e-12)
        )

    def buckets_json(self) -> str | None:
        return None if self.buckets is None else json.dumps(list(self.buckets))


def _zip(a: Agg, b: Agg, sign: int) -> tuple[int, ...] | None:
    if a.buckets is None:
        return None if b.buckets is None else tuple(sign * x for x in b.buckets)
    if b.buckets is None:
        return a.buckets
    return tuple(x + sign * y for x, y in zip(a.buckets, b.buckets, strict=True))


def as_datetime(period: Period) -> datetime:
    """An hourly period (hour buckets are datetimes; day and month buckets are dates)."""
    assert isinstance(period, datetime), period
    return period


def parse_buckets(raw: str | None) -> tuple[int, ...] | None:
    return None if raw is None else tuple(int(x) for x in json.loads(raw))


Rollup = dict[RowKey, Agg]
