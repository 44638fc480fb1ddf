"""Validating a batch of pushed events: one lean pass over plain dicts (no model per event,
the endpoint must take tens of thousands of events a second).

An event that breaks a rule is rejected alone, by its index; the others are kept. Valid events
are deduplicated by id within the batch (the first occurrence wins), and come out as rows ready
for one INSERT.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dashboard_metrics.core import catalogue
from dashboard_metrics.core.catalogue import Metric, MetricType
from dashboard_metrics.core.schema import BREAKDOWN_DIMS, NO_VALUE
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import hour_start

MAX_EVENTS = 10_000
MAX_ID_LENGTH = 200
MAX_LABEL_LENGTH = 256
MAX_TIMESTAMP_LENGTH = 64
FUTURE = timedelta(minutes=5)
FIELDS = ("id", "metric", "value", "timestamp", "labels")
_FIELD_SET = frozenset(FIELDS)
# Text the database stores and compares: PostgreSQL refuses NUL, and none is printable.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


_ABSENT: Any = object()  # an optional field left out (null is a value, and a wrong one)


class Rejected(Exception):
    """One event breaks a rule (the message says which)."""


# One valid event: id, metric, value, time, then the labels model, workflow, deployment.
Row = tuple[str, str, float, datetime, str, str, str]


@dataclass
class Batch:
    """The valid, distinct events (labels '' where absent), and the others."""

    rows: list[Row] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0  # repeated ids within the batch

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class Window:
    """The event times accepted now: from the oldest hour the hourly tier still folds (and
    the events are still kept) up to a little clock skew ahead."""

    floor: datetime
    ceiling: datetime
    now: datetime

    @classmethod
    def at(cls, now: datetime, settings: Settings) -> Window:
        days = min(settings.hourly_retention_days, settings.events_retention_days)
        floor = hour_start(now - timedelta(days=days)) + timedelta(hours=1)
        return cls(floor, now + FUTURE, now)


def pushed_names() -> str:
    names = [m.name for m in catalogue.pushed_metrics()]
    if not names:
        return "none is declared (DASHBOARD_METRICS_METRICS_FILE)"
    return ", ".join(names)


def _metric(raw: Any) -> Metric:
    metric = catalogue.METRICS.get(raw) if isinstance(raw, str) else None
    if metric is not None and metric.pushed:
        return metric
    if metric is not None:
        raise Rejected(
            f"metric {raw!r} is built in (computed from Unstract's tables) and cannot be "
            f"pushed; pushed metrics: {pushed_names()}"
        )
    shown = repr(raw[:80]) if isinstance(raw, str) else "missing or not a string"
    raise Rejected(f"unknown metric ({shown}); pushed metrics: {pushed_names()}")


def _id(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise Rejected("id: required, a non-empty string")
    if len(raw) > MAX_ID_LENGTH or _UNPRINTABLE.search(raw):
        raise Rejected(f"id: at most {MAX_ID_LENGTH} characters, without control characters")
    return raw


def _value(raw: Any, metric: Metric) -> float:
    if raw is _ABSENT:
        return 1.0
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise Rejected("value: must be a JSON number (omit it for 1)")
    value = float(raw)
    if not math.isfinite(value):
        raise Rejected("value: must be finite")
    if value < 0 and metric.type is MetricType.COUNTER:
        raise Rejected(f"value: {metric.name} is a counter; its values cannot be negative")
    return value


def _parse_time(raw: Any) -> datetime:
    if isinstance(raw, str) and len(raw) <= MAX_TIMESTAMP_LENGTH:
        try:
            parsed = datetime.fromisoformat(raw)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            raise Rejected("timestamp: not an ISO 8601 / RFC 3339 date-time") from None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            return datetime.fromtimestamp(raw, UTC)
        except (OverflowError, OSError, ValueError):
            raise Rejected("timestamp: epoch seconds out of range") from None
    raise Rejected("timestamp: an RFC 3339 string or epoch seconds")


def _time(raw: Any, window: Window) -> datetime:
    when = window.now if raw is _ABSENT else _parse_time(raw)
    if when < window.floor:
        raise Rejected(
            f"timestamp: older than {window.floor.isoformat()}, the oldest hour still kept"
        )
    if when > window.ceiling:
        raise Rejected("timestamp: more than 5 minutes in the future")
    return when


def _labels(raw: Any, metric: Metric) -> tuple[str, str, str]:
    if raw is _ABSENT:
        return (NO_VALUE, NO_VALUE, NO_VALUE)
    if not isinstance(raw, dict):
        raise Rejected("labels: must be an object")
    values = [NO_VALUE, NO_VALUE, NO_VALUE]
    for name, value in raw.items():
        if name not in metric.dimensions:
            declared = ", ".join(metric.dimensions) or "none"
            shown = repr(name[:80])
            raise Rejected(f"labels: {shown} is not a label of {metric.name} ({declared})")
        if not isinstance(value, str) or not value:
            raise Rejected(f"labels.{name}: a non-empty string")
        if len(value) > MAX_LABEL_LENGTH or _UNPRINTABLE.search(value):
            raise Rejected(
                f"labels.{name}: at most {MAX_LABEL_LENGTH} characters, without control characters"
            )
        values[BREAKDOWN_DIMS.index(name)] = value
    return (values[0], values[1], values[2])


def _unknown_field(event: dict[str, Any]) -> None:
    for name in event:
        if name not in _FIELD_SET:
            shown = repr(name[:80])
            raise Rejected(f"unknown field {shown}; an event has {', '.join(FIELDS)}")


def _add(batch: Batch, event: Any, window: Window, seen: set[str]) -> None:
    if not isinstance(event, dict):
        raise Rejected("an event must be a JSON object")
    if len(event) > len(FIELDS) or not _FIELD_SET.issuperset(event):
        _unknown_field(event)
    event_id = _id(event.get("id"))
    metric = _metric(event.get("metric"))
    value = _value(event.get("value", _ABSENT), metric)
    when = _time(event.get("timestamp", _ABSENT), window)
    model, workflow, deployment = _labels(event.get("labels", _ABSENT), metric)
    if event_id in seen:
        batch.duplicates += 1
        return
    seen.add(event_id)
    batch.rows.append((event_id, metric.name, value, when, model, workflow, deployment))


def validate(events: list[Any], window: Window) -> Batch:
    """Every event checked; the valid ones kept once each, in order."""
    batch = Batch()
    seen: set[str] = set()
    for index, event in enumerate(events):
        try:
            _add(batch, event, window, seen)
        except Rejected as exc:
            batch.rejected.append({"index": index, "error": str(exc)})
    return batch
