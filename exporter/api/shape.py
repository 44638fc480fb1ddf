"""Turning rollup cells into the anchor's response bodies (pure functions)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from exporter.api.rollups import Cell

UTC_ZONE = UTC

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
    sums: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0])
    starts: dict[datetime, datetime] = {}
    for cell in cells:
        bucket = starts.get(cell.start)
        if bucket is None:
            bucket = starts[cell.start] = bucket_start(cell.start, granularity, tz)
        entry = sums[(cell.metric_name, cell.project, cell.tag, bucket)]
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


def series(cells: list[Cell], granularity: str, tz: tzinfo) -> list[dict[str, Any]]:
    types = {cell.metric_name: cell.metric_type for cell in cells}
    grouped: dict[tuple[str, str, str], list[tuple[datetime, float, int]]] = defaultdict(list)
    for (name, project, tag, bucket), (value, count) in _sums(cells, granularity, tz).items():
        grouped[(name, project, tag)].append((bucket, value, int(count)))
    out = []
    for (name, project, tag), points in sorted(grouped.items()):
        points.sort(key=lambda p: p[0])
        out.append(
            {
                "metric_name": name,
                "metric_type": types[name],
                "project": project,
                "tag": tag,
                "data": [
                    {"timestamp": when.isoformat(), "value": value, "count": count}
                    for when, value, count in points
                ],
                "total_value": sum(p[1] for p in points),
                "total_count": sum(p[2] for p in points),
            }
        )
    return out


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
