"""Turning rollup cells into Unstract's response bodies (pure functions)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo
from typing import Any

import orjson

from dashboard_metrics.exporter.api.rollups import Cell

SOURCE_PERIOD = {"hourly": "hour", "daily": "day", "monthly": "month", "live": "hour"}


def bucket_start(start: datetime, granularity: str, tz: tzinfo) -> datetime:
    """The start, in ``tz``, of the hour/day/week/month bucket holding ``start``."""
    local = start.astimezone(tz)
    if granularity == "hour":
        return local
    day = local.date()
    if granularity == "week":
        day -= timedelta(days=day.weekday())
    elif granularity == "month":
        day = day.replace(day=1)
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _sums(cells: Iterable[Cell], granularity: str, tz: tzinfo) -> dict[Any, list[float]]:
    """(metric, project, tag, bucket) -> [value, count]."""
    sums: dict[Any, list[float]] = {}
    starts: dict[datetime, datetime] = {}
    for cell in cells:
        bucket = starts.get(cell.start)
        if bucket is None:
            bucket = starts[cell.start] = bucket_start(cell.start, granularity, tz)
        key = (cell.metric_name, cell.project, cell.tag, bucket)
        entry = sums.get(key)
        if entry is None:
            sums[key] = [0.0 + cell.value, cell.events]
        else:
            entry[0] += cell.value
            entry[1] += cell.events
    return sums


def summary(cells: list[Cell], source: str, tz: tzinfo) -> list[dict[str, Any]]:
    """Totals per metric; min/max over the metric's values per period of the source tier."""
    types = {cell.metric_name: cell.metric_type for cell in cells}
    per_period: dict[tuple[str, datetime], float] = defaultdict(float)
    counts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for (name, _project, _tag, bucket), (value, count) in _sums(
        cells, SOURCE_PERIOD[source], tz
    ).items():
        per_period[(name, bucket)] += value
        counts[name][0] += value
        counts[name][1] += count
    values: dict[str, list[float]] = defaultdict(list)
    for (name, _bucket), value in per_period.items():
        values[name].append(value)
    out = []
    for name in sorted(counts):
        total, count = counts[name]
        out.append(
            {
                "metric_name": name,
                "metric_type": types[name],
                "total_value": total,
                "total_count": int(count),
                "average_value": total / count if count else 0.0,
                "min_value": min(values[name]),
                "max_value": max(values[name]),
            }
        )
    return out


Points = dict[datetime, list[float]]  # bucket -> [value, count]


def _series_groups(
    cells: list[Cell], granularity: str, tz: tzinfo
) -> tuple[dict[str, str], list[tuple[tuple[str, str, str], list[tuple[datetime, list[float]]]]]]:
    """Metric types, and per (metric, project, tag) in order its points in bucket order."""
    types: dict[str, str] = {}
    groups: dict[tuple[str, str, str], Points] = {}
    starts: dict[datetime, datetime] = {}
    for cell in cells:
        bucket = starts.get(cell.start)
        if bucket is None:
            bucket = starts[cell.start] = bucket_start(cell.start, granularity, tz)
        types[cell.metric_name] = cell.metric_type
        key = (cell.metric_name, cell.project, cell.tag)
        points = groups.get(key)
        if points is None:
            points = groups[key] = {}
        entry = points.get(bucket)
        if entry is None:
            points[bucket] = [0.0 + cell.value, cell.events]
        else:
            entry[0] += cell.value
            entry[1] += cell.events
    ordered = [(key, sorted(groups[key].items())) for key in sorted(groups)]
    return types, ordered


def series(cells: list[Cell], granularity: str, tz: tzinfo) -> list[dict[str, Any]]:
    types, groups = _series_groups(cells, granularity, tz)
    out = []
    for (name, project, tag), points in groups:
        out.append(
            {
                "metric_name": name,
                "metric_type": types[name],
                "project": project,
                "tag": tag,
                "data": [
                    {"timestamp": when.isoformat(), "value": value, "count": int(count)}
                    for when, (value, count) in points
                ],
                "total_value": sum(p[1][0] for p in points),
                "total_count": sum(int(p[1][1]) for p in points),
            }
        )
    return out


def series_json(cells: list[Cell], granularity: str, tz: tzinfo) -> bytes:
    """``series(cells, granularity, tz)`` as JSON (orjson: compact, UTF-8, floats in their
    shortest round-trip form, so every number parses back exactly), one timestamp string per
    bucket however many groups share it."""
    return _series_body(*_series_groups(cells, granularity, tz))


def _series_body(
    types: dict[str, str],
    groups: list[tuple[tuple[str, str, str], list[tuple[datetime, list[float]]]]],
) -> bytes:
    stamps: dict[datetime, str] = {}
    out = []
    for (name, project, tag), points in groups:
        data = []
        total_value: float = 0
        total_count = 0
        for when, (value, count) in points:
            stamp = stamps.get(when)
            if stamp is None:
                stamp = stamps[when] = when.isoformat()
            events = int(count)
            total_value += value
            total_count += events
            data.append({"timestamp": stamp, "value": value, "count": events})
        out.append(
            {
                "metric_name": name,
                "metric_type": types[name],
                "project": project,
                "tag": tag,
                "data": data,
                "total_value": total_value,
                "total_count": total_count,
            }
        )
    return orjson.dumps(out)


def overview(cells: list[Cell], tz: tzinfo) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    trend: dict[datetime, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (name, _project, _tag, day), (value, count) in _sums(cells, "day", tz).items():
        totals[name][0] += value
        totals[name][1] += count
        trend[day][name] += value
    return (
        [
            {"metric_name": name, "total_value": value, "total_count": int(count)}
            for name, (value, count) in sorted(totals.items())
        ],
        [
            {"date": day.date().isoformat(), "metrics": dict(sorted(metrics.items()))}
            for day, metrics in sorted(trend.items())
        ],
    )
