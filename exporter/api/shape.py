"""Turning rollup cells into Unstract's response bodies (pure functions)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, tzinfo
from typing import Any

import orjson

from dashboard_metrics.exporter.api.rollups import Cell

SOURCE_PERIOD = {"hourly": "hour", "daily": "day", "monthly": "month", "live": "hour"}
# A group's dimension fields (its values and names: exporter/api/names.py), for breakdowns.
Labels = Callable[[tuple[str, ...]], dict[str, Any]]
Group = tuple[str, str, str, tuple[str, ...]]  # metric, project, tag, dimension values


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
    """(metric, project, tag, group, bucket) -> [value, count]."""
    sums: dict[Any, list[float]] = {}
    starts: dict[datetime, datetime] = {}
    for cell in cells:
        bucket = starts.get(cell.start)
        if bucket is None:
            bucket = starts[cell.start] = bucket_start(cell.start, granularity, tz)
        key = (cell.metric_name, cell.project, cell.tag, cell.group, bucket)
        entry = sums.get(key)
        if entry is None:
            sums[key] = [0.0 + cell.value, cell.events]
        else:
            entry[0] += cell.value
            entry[1] += cell.events
    return sums


def summary(
    cells: list[Cell], source: str, tz: tzinfo, labels: Labels | None = None
) -> list[dict[str, Any]]:
    """Totals per metric (and group); min/max over its values per period of the source tier."""
    types = {cell.metric_name: cell.metric_type for cell in cells}
    per_period: dict[tuple[str, tuple[str, ...], datetime], float] = defaultdict(float)
    counts: dict[tuple[str, tuple[str, ...]], list[float]] = defaultdict(lambda: [0.0, 0])
    for (name, _project, _tag, group, bucket), (value, count) in _sums(
        cells, SOURCE_PERIOD[source], tz
    ).items():
        per_period[(name, group, bucket)] += value
        counts[(name, group)][0] += value
        counts[(name, group)][1] += count
    values: dict[tuple[str, tuple[str, ...]], list[float]] = defaultdict(list)
    for (name, group, _bucket), value in per_period.items():
        values[(name, group)].append(value)
    out = []
    for name, group in sorted(counts):
        total, count = counts[(name, group)]
        entry: dict[str, Any] = {"metric_name": name, "metric_type": types[name]}
        if labels is not None:
            entry.update(labels(group))
        entry.update(
            {
                "total_value": total,
                "total_count": int(count),
                "average_value": total / count if count else 0.0,
                "min_value": min(values[(name, group)]),
                "max_value": max(values[(name, group)]),
            }
        )
        out.append(entry)
    return out


Points = dict[datetime, list[float]]  # bucket -> [value, count]


def _series_groups(
    cells: list[Cell], granularity: str, tz: tzinfo
) -> tuple[dict[str, str], list[tuple[Group, list[tuple[datetime, list[float]]]]]]:
    """Metric types, and per (metric, project, tag, group) in order its points in bucket order."""
    types: dict[str, str] = {}
    groups: dict[Group, Points] = {}
    starts: dict[datetime, datetime] = {}
    for cell in cells:
        bucket = starts.get(cell.start)
        if bucket is None:
            bucket = starts[cell.start] = bucket_start(cell.start, granularity, tz)
        types[cell.metric_name] = cell.metric_type
        key = (cell.metric_name, cell.project, cell.tag, cell.group)
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


def _head(name: str, kind: str, project: str, tag: str) -> dict[str, Any]:
    return {"metric_name": name, "metric_type": kind, "project": project, "tag": tag}


def series(
    cells: list[Cell], granularity: str, tz: tzinfo, labels: Labels | None = None
) -> list[dict[str, Any]]:
    types, groups = _series_groups(cells, granularity, tz)
    out = []
    for (name, project, tag, group), points in groups:
        entry = _head(name, types[name], project, tag)
        if labels is not None:
            entry.update(labels(group))
        out.append(
            entry
            | {
                "data": [
                    {"timestamp": when.isoformat(), "value": value, "count": int(count)}
                    for when, (value, count) in points
                ],
                "total_value": sum(p[1][0] for p in points),
                "total_count": sum(int(p[1][1]) for p in points),
            }
        )
    return out


def series_json(
    cells: list[Cell], granularity: str, tz: tzinfo, labels: Labels | None = None
) -> bytes:
    """``series(cells, granularity, tz, labels)`` as JSON (orjson: compact, UTF-8, floats in
    their shortest round-trip form, so every number parses back exactly), one timestamp string
    per bucket however many groups share it."""
    return _series_body(*_series_groups(cells, granularity, tz), labels)


def _series_body(
    types: dict[str, str],
    groups: list[tuple[Group, list[tuple[datetime, list[float]]]]],
    labels: Labels | None,
) -> bytes:
    stamps: dict[datetime, str] = {}
    out = []
    for (name, project, tag, group), points in groups:
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
        entry = _head(name, types[name], project, tag)
        if labels is not None:
            entry.update(labels(group))
        out.append(
            entry
            | {
                "data": data,
                "total_value": total_value,
                "total_count": total_count,
            }
        )
    return orjson.dumps(out)


def overview(cells: list[Cell], tz: tzinfo) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    trend: dict[datetime, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (name, _project, _tag, _group, day), (value, count) in _sums(cells, "day", tz).items():
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
