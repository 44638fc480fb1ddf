"""Reading and writing the rollup tiers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, delete, false, or_, select, tuple_
from sqlalchemy.engine import Connection

from aggregator.catalogue import METRICS
from aggregator.rollup_tables import Tier
from aggregator.upsert import BATCH_SIZE, upsert_rows
from aggregator.values import Agg, Rollup, RowKey, parse_buckets

PeriodRanges = Sequence[tuple[Any, Any]]


def period_filter(tier: Tier, ranges: PeriodRanges) -> Any:
    if not ranges:
        return false()
    return or_(*(and_(tier.period >= start, tier.period < end) for start, end in ranges))


def _period(tier: Tier, value: Any) -> datetime | date:
    if isinstance(value, str):  # SQLite dates come back as text in aggregate queries
        return date.fromisoformat(value)
    return value


def read(
    conn: Connection, tier: Tier, ranges: PeriodRanges, organization_id: str | None = None
) -> Rollup:
    table = tier.table
    query = select(
        table.c.organization_id,
        tier.period,
        table.c.metric_name,
        table.c.project,
        table.c.tag,
        table.c.metric_value,
        table.c.metric_count,
        table.c.buckets,
    ).where(period_filter(tier, ranges))
    if organization_id is not None:
        query = query.where(table.c.organization_id == organization_id)
    rollup: Rollup = {}
    for org, period, name, project, tag, value, count, buckets in conn.execute(query):
        key = RowKey(org, _period(tier, period), name, project, tag)
        rollup[key] = Agg(float(value), int(count), parse_buckets(buckets))
    return rollup


def _row(tier: Tier, key: RowKey, agg: Agg, stamp: datetime) -> dict[str, Any]:
    return {
        "organization_id": key.organization_id,
        tier.period_column: key.period,
        "metric_name": key.metric_name,
        "metric_type": METRICS[key.metric_name].type.value,
        "metric_value": agg.value,
        "metric_count": agg.count,
        "buckets": agg.buckets_json(),
        "project": key.project,
        "tag": key.tag,
        "created_at": stamp,
        "modified_at": stamp,
    }


_KEY_COLUMNS = ("organization_id", "{period}", "metric_name", "project", "tag")
_UPDATE_COLUMNS = ("metric_type", "metric_value", "metric_count", "buckets", "modified_at")


def key_columns(tier: Tier) -> list[str]:
    return [c.format(period=tier.period_column) for c in _KEY_COLUMNS]


def upsert(conn: Connection, tier: Tier, rows: Rollup, stamp: datetime) -> int:
    payload = [_row(tier, key, agg, stamp) for key, agg in rows.items()]
    return upsert_rows(conn, tier.table, payload, key_columns(tier), _UPDATE_COLUMNS)


def delete_keys(conn: Connection, tier: Tier, keys: Iterable[RowKey]) -> int:
    keys = list(keys)
    columns = [tier.table.c[name] for name in key_columns(tier)]
    for start in range(0, len(keys), BATCH_SIZE):
        batch = [tuple(key) for key in keys[start : start + BATCH_SIZE]]
        if conn.dialect.name == "postgresql":
            conn.execute(delete(tier.table).where(tuple_(*columns).in_(batch)))
        else:  # SQLite row values with IN work, but bind them one key at a time to stay simple
            for key in batch:
                conn.execute(
                    delete(tier.table).where(
                        and_(*(col == value for col, value in zip(columns, key, strict=True)))
                    )
                )
    return len(keys)


def delete_periods(
    conn: Connection, tier: Tier, ranges: PeriodRanges, organization_id: str | None = None
) -> int:
    statement = delete(tier.table).where(period_filter(tier, ranges))
    if organization_id is not None:
        statement = statement.where(tier.table.c.organization_id == organization_id)
    return conn.execute(statement).rowcount or 0


def merge(conn: Connection, tier: Tier, old: Rollup, new: Rollup, stamp: datetime) -> int:
    """Make the stored rows for the keys of ``old`` and ``new`` equal ``new``: write what changed
    and delete what vanished (a bucket with no events has no row). Returns rows written."""
    changed = {
        key: agg for key, agg in new.items() if agg.count > 0 and not agg.same_as(old.get(key))
    }
    gone = [key for key in old if key not in new or new[key].count <= 0]
    upsert(conn, tier, changed, stamp)
    delete_keys(conn, tier, gone)
    return len(changed) + len(gone)


def apply_deltas(
    conn: Connection, tier: Tier, deltas: Rollup, ranges: PeriodRanges, stamp: datetime
) -> int:
    """Add per-key differences to the stored rows of ``tier`` (all keys lie within ``ranges``)."""
    if not deltas:
        return 0
    stored = read(conn, tier, ranges)
    old = {key: stored[key] for key in deltas if key in stored}
    new = {key: (old[key] + delta if key in old else delta) for key, delta in deltas.items()}
    return merge(conn, tier, old, new, stamp)
