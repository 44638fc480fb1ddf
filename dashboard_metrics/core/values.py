"""In-memory rollup values: what one bucket of one metric holds, their arithmetic, and the
stored text of histogram bucket counts."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from operator import add
from typing import Any, NamedTuple

DEFAULT_PROJECT = "default"
DEFAULT_TAG = ""

Period = datetime | date


class RowKey(NamedTuple):
    organization_id: str
    period: Period
    metric_name: str
    project: str = DEFAULT_PROJECT
    tag: str = DEFAULT_TAG


class BreakdownKey(NamedTuple):
    """A breakdown row's key: '' for a dimension the event has no value for."""

    organization_id: str
    period: Period
    metric_name: str
    model: str = ""
    workflow: str = ""
    deployment: str = ""


Key = RowKey | BreakdownKey


@dataclass(frozen=True)
class Agg:
    """Sum of event values, number of events and per-bucket event counts (histograms): one
    bucket of one metric, or an all-time total (metric_totals)."""

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
    """Per-bucket counts from their stored text (a JSON array); None (no histogram) stays None."""
    return None if not raw else tuple(int(x) for x in json.loads(raw))


@lru_cache(maxsize=1 << 16)
def dump_buckets(buckets: tuple[int, ...] | None) -> str | None:
    """The stored text of per-bucket counts: ``json.dumps(list(buckets))``, written without
    json's overhead and remembered (COPY streams millions of rows, most of few events, whose
    counts repeat)."""
    return None if buckets is None else "[" + ", ".join(map(str, buckets)) + "]"


Rollup = dict[Key, Agg]

# (organization, period, metric_name, value, event count, per-bucket counts or None) with the
# default project and tag: a bucket as the source queries compute it, without per-row objects.
# A breakdown's raw row carries its dimension values after these six (model, workflow,
# deployment).
RawRow = tuple[Any, ...]


def as_rollup(rows: Iterable[RawRow]) -> Rollup:
    """Organization rows (six fields) or breakdown rows (six and the dimension values)."""
    rollup: Rollup = {}
    for row in rows:
        org, period, name, value, count, buckets = row[:6]
        key: Key = (
            BreakdownKey(org, period, name, *row[6:]) if len(row) > 6 else RowKey(org, period, name)
        )
        rollup[key] = Agg(value, count, buckets)
    return rollup


def without_dims(rows: Iterable[RawRow]) -> list[RawRow]:
    """Breakdown rows added up per (organization, period, metric): the organization rows."""
    sums: dict[tuple[Any, ...], list[Any]] = {}
    found = sums.get
    for row in rows:
        key = row[:3]
        buckets = row[5]
        acc = found(key)
        if acc is None:
            sums[key] = [row[3], row[4], None if buckets is None else list(buckets)]
            continue
        acc[0] += row[3]
        acc[1] += row[4]
        if buckets is not None:
            acc[2] = list(map(add, acc[2], buckets))
    return [
        (*key, value, count, None if b is None else tuple(b))
        for key, (value, count, b) in sums.items()
    ]


class RowSums:
    """Raw rows added up per (organization, metric, dimension values): a day or a month of
    hours. Mutable lists rather than Agg sums, because backfill adds up millions of rows."""

    def __init__(self) -> None:
        self.sums: dict[tuple[Any, ...], list[Any]] = {}

    def add(self, row: RawRow) -> None:
        self.add_all((row,))

    def add_all(self, rows: Iterable[RawRow]) -> None:
        # One loop with its lookups bound: called for every hour row of a backfill.
        sums = self.sums
        found = sums.get
        for row in rows:
            key = (row[0], row[2], *row[6:])
            buckets = row[5]
            acc = found(key)
            if acc is None:
                sums[key] = [row[3], row[4], None if buckets is None else list(buckets)]
                continue
            acc[0] += row[3]
            acc[1] += row[4]
            if buckets is not None:
                acc[2] = list(map(add, acc[2], buckets))

    def rows(self, period: Period) -> list[RawRow]:
        return [
            (key[0], period, key[1], value, count, None if b is None else tuple(b), *key[2:])
            for key, (value, count, b) in self.sums.items()
        ]
