"""Query parameter parsing and validation: every bad value is a 400 naming the parameter."""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dashboard_metrics.core.catalogue import DIMENSIONS, METRIC_NAMES, METRICS, Dimension
from dashboard_metrics.core.timeutil import HOUR
from dashboard_metrics.exporter.api.dims import DIMENSION_NAMES, NO_BREAKDOWN, Breakdown
from dashboard_metrics.exporter.api.errors import invalid

MAX_RANGE = timedelta(days=365)
GRANULARITIES = ("hour", "day", "week", "month")
SOURCES = ("auto", "hourly", "daily", "monthly")
# Accepted instants: far enough inside datetime's range that every derived bound (default
# start, hour rounding, month ends, retention horizons) stays representable.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
TEXT_MAX = 64  # the rollup tables' metric_name/project/tag and organization_id width
DIMENSION_TEXT_MAX = 255  # usage.model_name and usage.workflow_id are 255 wide
GROUP_BY_MAX = 2
BREAKDOWN_PARAMETERS = ("group_by", *DIMENSION_NAMES)
# Control characters and lone surrogates (undecodable bytes): no database takes them.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_DIGITS = re.compile("[0-9]{1,12}")


def given(query: Mapping[str, str], name: str) -> str | None:
    """A parameter's value, None when absent. Present means a value: an empty one is a 400,
    not a silent default (omit the parameter for its default)."""
    raw = query.get(name)
    if raw == "":
        raise invalid(name, "An empty value is not valid; omit the parameter for its default.")
    return raw


def parse_tz(query: Mapping[str, str]) -> tzinfo:
    name = given(query, "tz") or "UTC"
    if name in {"UTC", "Etc/UTC", "Z"}:
        return UTC
    try:
        check_text(name, "tz", 255)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise invalid(
            "tz", f"Unknown time zone {name!r}; use an IANA name such as Europe/Berlin."
        ) from None


def parse_datetime(query: Mapping[str, str], name: str, tz: tzinfo) -> datetime | None:
    """ISO-8601 date or date-time; naive values are local times of ``tz``."""
    raw = given(query, name)
    if raw is None:
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
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        value = LATEST  # past either end of the calendar: reported below
    if not EARLIEST <= value < LATEST:
        raise invalid(
            name,
            f"Datetime {raw!r} is out of range; expected {EARLIEST.date()} up to "
            f"{LATEST.date()} (exclusive).",
        )
    return value


def parse_choice(
    query: Mapping[str, str], name: str, choices: tuple[str, ...], default: str
) -> str:
    raw = given(query, name)
    if raw is None:
        return default
    if raw not in choices:
        raise invalid(name, f'"{raw}" is not a valid choice; expected one of {", ".join(choices)}.')
    return raw


def parse_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """ASCII digits only: no sign, spaces, underscores or other scripts' digits."""
    raw = given(query, name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        raise invalid(name, f"A whole number in ASCII digits is required, got {raw!r}.")
    value = int(raw)
    if not low <= value <= high:
        raise invalid(name, f"Must be between {low} and {high}, got {value}.")
    return value


def parse_bool(query: Mapping[str, str], name: str) -> bool:
    raw = (given(query, name) or "false").lower()
    if raw in {"true", "1", "yes"}:
        return True
    if raw in {"false", "0", "no"}:
        return False
    raise invalid(name, f"Must be true or false, got {raw!r}.")


def check_text(raw: str, name: str, max_length: int = TEXT_MAX) -> str:
    """Free text a database will compare: bounded, printable, valid Unicode."""
    if len(raw) > max_length or _UNPRINTABLE.search(raw):
        raise invalid(
            name, f"At most {max_length} characters, without control characters or invalid UTF-8."
        )
    return raw


def parse_text(query: Mapping[str, str], name: str, max_length: int = TEXT_MAX) -> str | None:
    raw = query.get(name)
    return None if raw is None else check_text(raw, name, max_length)


def check_query(query: Mapping[str, str], allowed: frozenset[str]) -> None:
    """Every parameter is honoured or refused: unknown or repeated ones are a 400."""
    seen: set[str] = set()
    for name, _value in query.items():  # one pair per value: repeated names come again
        if name not in allowed:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise invalid(
                check_name(name), f"Unknown parameter for this endpoint; accepted: {accepted}."
            )
        if name in seen:
            raise invalid(name, "Given more than once.")
        seen.add(name)


def check_name(name: str) -> str:
    """A parameter name safe to echo in ``attr``."""
    return name if len(name) <= TEXT_MAX and not _UNPRINTABLE.search(name) else "<parameter>"


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
    rng = DateRange(start, end, tz)
    if tz is not UTC:
        check_whole_hour_offsets(rng)
    return rng


def check_whole_hour_offsets(rng: DateRange) -> None:
    """Every endpoint reads whole UTC hours, so local buckets need whole-hour offsets."""
    odd = _odd_offsets(rng.tz)
    # The first odd interval ending after the range's first hour: does it begin before the
    # range ends (the hour after the last one included, as a bucket edge)?
    index = bisect.bisect_right(odd, rng.first_hour, key=lambda span: span[1])
    if index < len(odd) and odd[index][0] <= rng.end_hour:
        raise invalid(
            "tz",
            "Time zones with offsets that are not whole hours cannot be answered from hourly data.",
        )


# zoneinfo repeats a zone's last rule every year after its table ends (2037 at the latest): a
# zone odd anywhere in the last sampled year is taken as odd from then on (strict, never wrong).
_SAMPLED_UNTIL = datetime(2041, 1, 1, tzinfo=UTC)
_STEP = timedelta(hours=12)  # no zone keeps an offset for less than this


def _odd(tz: tzinfo, at: datetime) -> bool:
    return bool((at.astimezone(tz).utcoffset() or timedelta()) % HOUR)


@cache  # one entry per zone ever asked for (a few hundred exist)
def _odd_offsets(tz: tzinfo) -> tuple[tuple[datetime, datetime], ...]:
    """The UTC hour spans [start, end) in [EARLIEST, LATEST) where ``tz``'s offset is not a
    whole number of hours, exact to the hour. Computed once per zone by sampling, in time
    independent of any request's range (ranges may span millennia)."""
    spans: list[tuple[datetime, datetime]] = []
    begun = EARLIEST if _odd(tz, EARLIEST) else None
    previous, state = EARLIEST, begun is not None
    at = EARLIEST + _STEP
    while at <= _SAMPLED_UNTIL:
        if _odd(tz, at) != state:
            edge = previous + HOUR  # the first hour of the new state, between two samples
            while _odd(tz, edge) == state:
                edge += HOUR
            if begun is None:
                begun = edge
            else:
                spans.append((begun, edge))
                begun = None
            state = not state
        previous = at
        at += _STEP
    last_year = _SAMPLED_UNTIL - timedelta(days=366)
    if begun is not None or (spans and spans[-1][1] > last_year):
        first = begun if begun is not None else last_year
        while spans and spans[-1][1] >= first:
            first = min(first, spans.pop()[0])
        spans.append((first, LATEST))
    return tuple(spans)


@dataclass(frozen=True)
class MetricFilter:
    metric_name: str | None
    project: str | None
    tag: str | None
    # Grouping and dimension filters (summary/, series/ and live twins only).
    breakdown: Breakdown = NO_BREAKDOWN

    def key(self) -> str:
        return json.dumps(self.parts(), separators=(",", ":"))

    def parts(self) -> tuple[str | None, str | None, str | None]:
        return (self.metric_name, self.project, self.tag)


def parse_filter(query: Mapping[str, str]) -> MetricFilter:
    metric = query.get("metric_name")
    if metric is not None and metric not in METRICS:
        raise invalid(
            "metric_name",
            f"Unknown metric {check_name(metric)!r}; expected one of {', '.join(METRIC_NAMES)}.",
        )
    return MetricFilter(metric, parse_text(query, "project"), parse_text(query, "tag"))


def parse_selection(query: Mapping[str, str]) -> MetricFilter:
    """``parse_filter`` plus `group_by` and the dimension filters."""
    flt = parse_filter(query)
    if not any(name in query for name in BREAKDOWN_PARAMETERS):
        return flt  # the organization level: nothing more to parse (the warm path)
    breakdown = parse_breakdown(query, flt.metric_name)
    if not breakdown.active:
        return flt
    return MetricFilter(flt.metric_name, flt.project, flt.tag, breakdown)


def parse_group_by(query: Mapping[str, str]) -> tuple[Dimension, ...]:
    """One or two distinct dimensions, comma-separated."""
    raw = given(query, "group_by")
    if raw is None:
        return ()
    parts = raw.split(",")
    for part in parts:
        if part not in DIMENSION_NAMES:
            raise invalid(
                "group_by",
                f"{check_name(part)!r} is not a dimension; expected one or two of "
                f"{', '.join(DIMENSION_NAMES)}, comma-separated.",
            )
    if len(set(parts)) != len(parts):
        raise invalid("group_by", f"A dimension is given twice in {raw!r}.")
    if len(parts) > GROUP_BY_MAX:
        raise invalid("group_by", f"At most {GROUP_BY_MAX} dimensions, got {len(parts)}.")
    return tuple(Dimension(part) for part in parts)


def parse_breakdown(query: Mapping[str, str], metric_name: str | None) -> Breakdown:
    group_by = parse_group_by(query)
    filters = []
    for dimension in DIMENSIONS:
        raw = given(query, dimension.value)
        if raw is not None:
            filters.append((dimension, check_text(raw, dimension.value, DIMENSION_TEXT_MAX)))
    if metric_name is not None:
        carried = METRICS[metric_name].dimensions
        asked = [("group_by", d) for d in group_by] + [(d.value, d) for d, _value in filters]
        for parameter, dimension in asked:
            if dimension not in carried:
                raise invalid(parameter, f"{metric_name} has no dimension {dimension.value}")
    return Breakdown(group_by, tuple(filters))
