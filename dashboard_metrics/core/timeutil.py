"""UTC bucket arithmetic shared by the aggregator, the API and the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

Clock = Callable[[], datetime]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` in aware UTC: a naive value is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_utc_or_none(value: Any) -> datetime | None:
    """A timestamp as a database returns it (SQLite: ISO text or naive) in aware UTC."""
    if value is None:
        return None
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def as_period(value: Any) -> datetime | date:
    """A rollup period as a database returns it: SQLite gives dates as text in aggregates."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def hour_start(value: datetime) -> datetime:
    return as_utc(value).replace(minute=0, second=0, microsecond=0)


def month_of(value: date | datetime) -> date:
    if isinstance(value, datetime):
        value = as_utc(value).date()
    return value.replace(day=1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def hours_between(start: datetime, end: datetime) -> Iterator[datetime]:
    """Hour starts h with start <= h < end (start is truncated first)."""
    current = hour_start(start)
    while current < end:
        yield current
        current += HOUR


def days_between(start: date, end: date) -> Iterator[date]:
    """Days d with start <= d < end."""
    current = start
    while current < end:
        yield current
        current += DAY


_T = TypeVar("_T", bound=date)  # dates and datetimes


def add_range(ranges: list[tuple[_T, _T]], start: _T, end: _T) -> None:
    """Append [start, end) to ``ranges`` (ordered, ending at or before ``start``), merged into
    the last range when it ends where this one starts. An empty range adds nothing."""
    if start >= end:
        return
    if ranges and ranges[-1][1] == start:
        ranges[-1] = (ranges[-1][0], end)
    else:
        ranges.append((start, end))


def merge_ranges(starts: Iterable[datetime], width: timedelta) -> list[tuple[datetime, datetime]]:
    """Collapse bucket starts of equal width into contiguous [start, end) ranges."""
    ranges: list[tuple[datetime, datetime]] = []
    for start in sorted(set(starts)):
        add_range(ranges, start, start + width)
    return ranges


def month_ranges(months: Iterable[date]) -> list[tuple[date, date]]:
    """Collapse month starts into contiguous [start, end) ranges."""
    ranges: list[tuple[date, date]] = []
    for month in sorted(set(months)):
        add_range(ranges, month, next_month(month))
    return ranges
