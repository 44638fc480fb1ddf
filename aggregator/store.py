"""Reading and writing the rollup tiers."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Text,
    and_,
    bindparam,
    cast,
    column,
    delete,
    exists,
    func,
    select,
    table,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from dashboard_metrics.core.catalogue import BUILTIN_NAMES, METRICS, MetricType
from dashboard_metrics.core.schema import Granularity, Ranges, Tier, in_ranges
from dashboard_metrics.core.timeutil import as_period
from dashboard_metrics.core.upsert import BATCH_SIZE, upsert_rows
from dashboard_metrics.core.values import (
    DEFAULT_PROJECT,
    DEFAULT_TAG,
    Agg,
    BreakdownKey,
    Key,
    RawRow,
    Rollup,
    RowKey,
    as_rollup,
    dump_buckets,
    parse_buckets,
)


def key_of(tier: Tier, values: Any) -> Key:
    """A tier's row key from (organization, period, metric, *dims) as read from the table."""
    org, period, name, *dims = values
    kind = BreakdownKey if tier.is_breakdown else RowKey
    return kind(org, as_period(period), name, *dims)


# Above this many organizations a read takes the whole period range and keeps what it needs.
_MAX_ORG_FILTER = 1000
# Series (a row's key without its period) bound per statement when a rebuild names them.
_SERIES_BATCH = 500

Series = tuple[Any, ...]  # organization, metric, then the tier's dims


def series_of(key: Key) -> Series:
    """The series a row belongs to: its key without the period."""
    return (key[0], key[2], *key[3:])


def _series_filters(conn: Connection, tier: Tier, series: Collection[Series] | None) -> list[Any]:
    """One extra condition per batch of ``series`` (None: a single pass over all rows)."""
    if series is None:
        return [None]
    table = tier.table
    names = ("organization_id", "metric_name", *tier.dims)
    columns = tuple_(*(table.c[name] for name in names))
    ordered = sorted(series)
    if conn.dialect.name == "postgresql":
        # A semi-join against the series unnested from one array per column: PostgreSQL plans
        # a list of row values as one OR branch per row, evaluated for every row it reads.
        arrays = [
            func.unnest(bindparam(f"series_{name}", [row[i] for row in ordered], ARRAY(Text)))
            for i, name in enumerate(names)
        ]
        # The organizations as well: the primary key (organization first) then bounds the rows.
        orgs = sorted({row[0] for row in ordered})
        return [and_(table.c.organization_id.in_(orgs), columns.in_(select(*arrays)))]
    return [
        columns.in_(ordered[start : start + _SERIES_BATCH])
        for start in range(0, len(ordered), _SERIES_BATCH)
    ]


def read(
    conn: Connection,
    tier: Tier,
    ranges: Ranges,
    organization_id: str | None = None,
    organizations: Collection[str] | None = None,
    series: Collection[Series] | None = None,
) -> Rollup:
    """The stored rows of ``tier`` within ``ranges`` (of one organization, of
    ``organizations``, or of the given ``series`` only)."""
    rollup: Rollup = {}
    for only in _series_filters(conn, tier, series):
        rollup.update(_read(conn, tier, ranges, organization_id, organizations, only))
    return rollup


def _read(
    conn: Connection,
    tier: Tier,
    ranges: Ranges,
    organization_id: str | None,
    organizations: Collection[str] | None,
    only: Any,
) -> Rollup:
    table = tier.table
    width = 3 + len(tier.dims)
    query = select(
        table.c.organization_id,
        tier.period,
        table.c.metric_name,
        *(table.c[dim] for dim in tier.dims),
        table.c.metric_value,
        table.c.metric_count,
        table.c.buckets,
    ).where(in_ranges(tier.period, ranges))
    if organization_id is not None:
        query = query.where(table.c.organization_id == organization_id)
    if organizations is not None and len(organizations) <= _MAX_ORG_FILTER:
        query = query.where(table.c.organization_id.in_(sorted(organizations)))
    if only is not None:
        query = query.where(only)
    rollup: Rollup = {}
    for row in conn.execute(query):
        if organizations is not None and row[0] not in organizations:
            continue
        value, count, buckets = row[width:]
        rollup[key_of(tier, row[:width])] = Agg(float(value), int(count), parse_buckets(buckets))
    return rollup


def _upper_bucket(lower: Tier, upper: Tier, dialect: str) -> Any:
    """SQL: the ``upper`` bucket (a date) holding each of ``lower``'s periods."""
    period = lower.period
    if upper.granularity is Granularity.DAY:  # from hours
        if dialect == "postgresql":
            return cast(func.timezone("UTC", period), Date)
        return func.date(period)
    if dialect == "postgresql":  # months from days
        return cast(func.date_trunc("month", period), Date)
    return func.strftime("%Y-%m-01", period)


def sums(
    conn: Connection,
    lower: Tier,
    upper: Tier,
    ranges: Ranges,
    organizations: Collection[str] | None = None,
    series: Collection[Series] | None = None,
) -> Rollup:
    """``upper``'s rows as the sums of ``lower``'s stored rows within ``ranges`` (of
    ``organizations`` or of ``series``; None: all), added up by the database: values and
    counts by GROUP BY, histogram bucket counts slot by slot from the stored JSON arrays."""
    rollup: Rollup = {}
    for only in _series_filters(conn, lower, series):
        rollup.update(_sums(conn, lower, upper, ranges, organizations, only))
    return rollup


def _sums(
    conn: Connection,
    lower: Tier,
    upper: Tier,
    ranges: Ranges,
    organizations: Collection[str] | None,
    only: Any,
) -> Rollup:
    table = lower.table
    dialect = conn.dialect.name
    bucket = _upper_bucket(lower, upper, dialect).label("bucket")
    keys = [table.c.organization_id, bucket, table.c.metric_name, *(table.c[d] for d in lower.dims)]
    scope = [in_ranges(lower.period, ranges)]
    if organizations is not None:
        scope.append(table.c.organization_id.in_(sorted(organizations)))
    if only is not None:
        scope.append(only)
    if dialect == "postgresql":
        return _sums_postgresql(conn, upper, keys, scope)
    width = len(keys)
    totals = select(*keys, func.sum(table.c.metric_value), func.sum(table.c.metric_count))
    slots = func.json_each(table.c.buckets).table_valued("key", "value")
    per_slot = (
        select(*keys, slots.c.key, func.sum(slots.c.value))
        .select_from(table.join(slots, true()))
        .where(*scope, table.c.buckets.isnot(None))
        .group_by(*keys, slots.c.key)
    )
    counts: dict[Key, dict[int, int]] = {}
    for row in conn.execute(per_slot):
        key = key_of(upper, row[:width])
        counts.setdefault(key, {})[int(row[width])] = int(row[width + 1])
    rollup: Rollup = {}
    for row in conn.execute(totals.where(*scope).group_by(*keys)):
        key = key_of(upper, row[:width])
        slots_of = counts.get(key)
        buckets = None if slots_of is None else tuple(slots_of[i] for i in range(len(slots_of)))
        rollup[key] = Agg(float(row[width]), int(row[width + 1]), buckets)
    return rollup


def _max_slots() -> int:
    """The most bucket slots a stored row has (the +Inf slot included), pushed metrics too."""
    return max(entry.bucket_slots for entry in METRICS.values())


def _sums_postgresql(conn: Connection, upper: Tier, keys: list[Any], scope: list[Any]) -> Rollup:
    """One GROUP BY pass: each row's bucket array is parsed once (in a subquery kept apart by
    OFFSET 0) and summed slot by slot next to the values and counts. (Expanding the arrays
    into one row per slot and grouping those cost seconds for a month of breakdown rows.)"""
    table = keys[0].table
    parsed = cast(
        func.string_to_array(func.btrim(table.c.buckets, "[]"), ","), ARRAY(BigInteger)
    ).label("slots")
    labelled = [k.label(f"k{i}") for i, k in enumerate(keys)]
    rows = (
        select(*labelled, table.c.metric_value, table.c.metric_count, parsed)
        .where(*scope)
        .offset(0)
        .subquery()
    )
    group = [rows.c[f"k{i}"] for i in range(len(keys))]
    slot_sums = [func.sum(rows.c.slots[i + 1]) for i in range(_max_slots())]
    length = func.max(func.cardinality(rows.c.slots))  # NULL: no bucket array (a counter)
    query = select(
        *group,
        func.sum(rows.c.metric_value),
        func.sum(rows.c.metric_count),
        length,
        *slot_sums,
    ).group_by(*group)
    width = len(keys)
    rollup: Rollup = {}
    for row in conn.execute(query):
        key = key_of(upper, row[:width])
        slots = row[width + 2]
        first = width + 3
        buckets = tuple(int(c) for c in row[first : first + slots]) if slots else None
        rollup[key] = Agg(float(row[width]), int(row[width + 1]), buckets)
    return rollup


def _metric_type(name: str, agg: Agg) -> str:
    """The catalogue's type; for a metric no longer declared (a pushed metric taken out of the
    metrics file, whose rows days and months still sum), what its buckets say."""
    entry = METRICS.get(name)
    if entry is not None:
        return entry.type.value
    return MetricType.COUNTER.value if agg.buckets is None else MetricType.HISTOGRAM.value


def _row(tier: Tier, key: Key, agg: Agg, stamp: datetime) -> dict[str, Any]:
    return {
        "organization_id": key.organization_id,
        tier.period_column: key.period,
        "metric_name": key.metric_name,
        "metric_type": _metric_type(key.metric_name, agg),
        "metric_value": agg.value,
        "metric_count": agg.count,
        "buckets": dump_buckets(agg.buckets),
        **dict(zip(tier.dims, key[3:], strict=True)),
        "created_at": stamp,
        "modified_at": stamp,
    }


_UPDATE_COLUMNS = ("metric_type", "metric_value", "metric_count", "buckets", "modified_at")


def key_columns(tier: Tier) -> list[str]:
    return ["organization_id", tier.period_column, "metric_name", *tier.dims]


def upsert(conn: Connection, tier: Tier, rows: Rollup, stamp: datetime) -> int:
    payload = [_row(tier, key, agg, stamp) for key, agg in rows.items()]
    return upsert_rows(conn, tier.table, payload, key_columns(tier), _UPDATE_COLUMNS)


def delete_keys(conn: Connection, tier: Tier, keys: Iterable[Key]) -> int:
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


def merge(conn: Connection, tier: Tier, old: Rollup, new: Rollup, stamp: datetime) -> set[Key]:
    """Make the stored rows for the keys of ``old`` and ``new`` equal ``new``: write what changed
    and delete what vanished (a bucket with no events has no row). Returns the keys written."""
    changed = {
        key: agg for key, agg in new.items() if agg.count > 0 and not agg.same_as(old.get(key))
    }
    gone = [key for key in old if key not in new or new[key].count <= 0]
    upsert(conn, tier, changed, stamp)
    delete_keys(conn, tier, gone)
    return changed.keys() | gone


def builtin_only(rollup: Rollup) -> Rollup:
    """The rows of the built-in metrics (what a backfill from the source rewrites)."""
    return {key: agg for key, agg in rollup.items() if key.metric_name in BUILTIN_NAMES}


def _stage_columns(tier: Tier) -> list[str]:
    return [
        "organization_id",
        tier.period_column,
        "metric_name",
        "metric_type",
        "metric_value",
        "metric_count",
        "buckets",
        *tier.dims,
    ]


def _copy_types(tier: Tier, extra: tuple[Any, ...]) -> list[str]:
    """PostgreSQL types of a COPY's columns, in _stage_columns order (then the stamps)."""
    period = "timestamptz" if tier.granularity is Granularity.HOUR else "date"
    head = ["text", period, "text", "text", "float8", "int8", "text"]
    return head + ["text"] * len(tier.dims) + ["timestamptz"] * len(extra)


def _copy_rows(
    conn: Connection,
    tier: Tier,
    target: str,
    names: str,
    rows: Iterable[RawRow],
    stamp: datetime | None,
) -> int:
    """COPY rows (with created_at and modified_at = ``stamp`` when given); returns their number."""
    kinds = {name: entry.type.value for name, entry in METRICS.items()}
    # Organization raw rows carry no key columns past the metric: the default project and tag.
    fixed: tuple[Any, ...] = () if tier.is_breakdown else (DEFAULT_PROJECT, DEFAULT_TAG)
    extra: tuple[Any, ...] = () if stamp is None else (stamp, stamp)
    columns = f"{names}, created_at, modified_at" if extra else names
    copied = 0
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    # Binary: no text formatting of every timestamp and float (millions of rows per backfill).
    with cursor.copy(f"COPY {target} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_copy_types(tier, extra))
        for row in rows:
            org, period, name, value, count, buckets = row[:6]
            if count > 0:  # merge deletes a key whose new count is not positive
                text_buckets = dump_buckets(buckets)
                values = (org, period, name, kinds[name], value, count, text_buckets)
                copy.write_row((*values, *fixed, *row[6:], *extra))
                copied += 1
    return copied


def replace(
    conn: Connection,
    tier: Tier,
    ranges: Ranges,
    rows: Iterable[RawRow],
    stamp: datetime,
    organization_id: str | None = None,
) -> int:
    """Make the stored rows of the built-in metrics of ``tier`` within ``ranges`` (of one
    organization when given) equal ``rows``: ``merge(read(...), rows)`` without reading the old
    rows into Python. On PostgreSQL the rows are COPYed into a temporary table and merged there.
    Returns rows written. The pushed metrics' rows are the ticks' alone (aggregator/events.py):
    a backfill from the source leaves them as they are."""
    if conn.dialect.name != "postgresql":
        old = builtin_only(read(conn, tier, ranges, organization_id))
        new = as_rollup(rows)
        return len(merge(conn, tier, old, new, stamp))
    preparer = conn.dialect.identifier_preparer
    columns = _stage_columns(tier)
    names = ", ".join(preparer.quote(c) for c in columns)
    target = preparer.format_table(tier.table)
    stage = f"dm_stage_{tier.table.name}"
    scope = [in_ranges(tier.period, ranges), tier.table.c.metric_name.in_(sorted(BUILTIN_NAMES))]
    if organization_id is not None:
        scope.append(tier.table.c.organization_id == organization_id)
    if not conn.execute(select(exists().where(*scope))).scalar():
        # Nothing stored in the range (a first backfill): every row is new, COPY them in.
        return _copy_rows(conn, tier, target, names, rows, stamp)
    # ON COMMIT DROP: the stage lives as long as the caller's transaction.
    conn.execute(
        text(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DROP AS "
            f"SELECT {names} FROM {target} WITH NO DATA"
        )
    )
    conn.execute(text(f"TRUNCATE {stage}"))
    _copy_rows(conn, tier, stage, names, rows, None)
    keys = ", ".join(preparer.quote(c) for c in key_columns(tier))
    compared = ("metric_value", "metric_count", "buckets")
    upserted = conn.execute(
        text(
            f"INSERT INTO {target} ({names}, created_at, modified_at) "
            f"SELECT {names}, :stamp, :stamp FROM {stage} "
            f"ON CONFLICT ({keys}) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATE_COLUMNS)
            # Only rows whose numbers changed are written (merge's old != new).
            + f" WHERE ({', '.join(f'{target}.{c}' for c in compared)}) IS DISTINCT FROM "
            f"({', '.join(f'EXCLUDED.{c}' for c in compared)})"
        ).bindparams(bindparam("stamp", stamp, type_=tier.table.c.modified_at.type))
    ).rowcount
    staged = table(stage, *(column(c) for c in key_columns(tier)))
    gone = delete(tier.table).where(
        *scope, ~exists().where(*(staged.c[c] == tier.table.c[c] for c in key_columns(tier)))
    )
    deleted = conn.execute(gone).rowcount
    return int(upserted or 0) + int(deleted or 0)
