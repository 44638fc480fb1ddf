"""Query parameter parsing and validation: every bad value is a 400 naming the parameter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aggregator.timeutil import HOUR
from exporter.api.errors import invalid

MAX_RANGE = timedelta(days=365)
GRANULARITIES = ("hour", "day", "week", "month")
SOURCES = ("auto", "hourly", "daily", "monthly")


def parse_tz(query: Mapping[str, str]) -> tzinfo:
    name = query.get("tz", "UTC") or "UTC"
    if name in {"UTC", "Etc/UTC", "Z"}:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise invalid(
            "tz", f"Unknown time zone {name!r}; use an IANA name such as Europe/Berlin."
        ) from None


def parse_datetime(query: Mapping[str, str], name: str, tz: tzinfo) -> datetime | None:
    """ISO-8601 date or date-time; naive values are local times of ``tz``."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            value = datetime(day.year, day.month, day.day)
        else:
            value = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise invalid(name, f"Invalid datetime {raw!r}; expected ISO-8601.") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise invalid(name, f"Datetime {raw!r} is out of range.") from None


def parse_choice(
    query: Mapping[str, str], name: str, choices: tuple[str, ...], default: str
) -> str:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise invalid(name, f'"{raw}" is not a valid choice; expected one of {", ".join(choices)}.')
    return raw


def parse_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, f"A valid integer is required, got {raw!r}.") from None
    if not low <= value <= high:
        raise invalid(name, f"Must be between {low} and {high}, got {value}.")
    return value


def parse_bool(query: Mapping[str, str], name: str) -> bool:
    raw = (query.get(name) or "false").lower()
    if raw in {"true", "1", "yes"}:
        return True
    if raw in {"false", "0", "no"}:
        return False
    raise invalid(name, f"Must be true or false, got {raw!r}.")


def parse_text(query: Mapping[str, str], name: str, max_length: int = 64) -> str | None:
    raw = query.get(name)
    if raw is None:
        return None
    if len(raw) > max_length or "\x00" in raw:
        raise invalid(name, f"At most {max_length} characters, no NUL.")
    return raw


def ceil_hour(value: datetime) -> datetime:
    floor = value.replace(minute=0, second=0, microsecond=0)
    return floor if floor == value else floor + HOUR


@dataclass(frozen=True)
class DateRange:
    """The requested bounds and the whole UTC hours they select.

    An hour belongs to the range when it begins at or after ``start`` and before ``end``:
    the rollups resolve time to whole hours, and this rule keeps every endpoint exact.
    """

    start: datetime
    end: datetime
    tz: tzinfo

    @property
    def first_hour(self) -> datetime:
        return ceil_hour(self.start)

    @property
    def end_hour(self) -> datetime:
        return max(ceil_hour(self.end), self.first_hour)

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def parse_range(
    query: Mapping[str, str],
    now: datetime,
    default_days: int,
    max_range: timedelta = MAX_RANGE,
) -> DateRange:
    """start_date/end_date/tz: end defaults to now, start to ``default_days`` before end."""
    tz = parse_tz(query)
    end = parse_datetime(query, "end_date", tz) or now
    start = parse_datetime(query, "start_date", tz) or end - timedelta(days=default_days)
    if start > end:
        raise invalid("start_date", "Start date must be before end date")
    if end - start > max_range:
        raise invalid("start_date", f"Query range cannot exceed {max_range.days} days")
    return DateRange(start, end, tz)


@dataclass(frozen=True)
class MetricFilter:
    metric_name: str | None
    project: str | None
    tag: str | None

    def key(self) -> str:
        return json.dumps(self.parts(), separators=(",", ":"))

    def parts(self) -> tuple[str | None, str | None, str | None]:
        return (self.metric_name, self.project, self.tag)


def parse_filter(query: Mapping[str, str]) -> MetricFilter:
    return MetricFilter(
        parse_text(query, "metric_name"), parse_text(query, "project"), parse_text(query, "tag")
    )
