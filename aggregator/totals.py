"""All-time totals per (organization, metric), maintained by the writer after each change so
that /metrics never aggregates history on a scrape.

Each row holds the true total (the sum over the monthly tier, which is kept forever) and a
*monotonic* total for Prometheus: it grows by every increase of the true total and ignores
decreases (a reconciliation that removes deleted source rows). Histograms apply the rule per
bucket, so bucket counts, ``_count`` and ``_sum`` never decrease either. ``monotonic - true``
is what corrections took away; /metrics exposes it as its own counter family.

The table lives in the rollup database and is written inside the writer's transaction, so
every serve replica reads the same values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Table,
    func,
    select,
    tuple_,
)
from sqlalchemy.engine import Connection

from dashboard_metrics.core import state
from dashboard_metrics.core.schema import MONTHLY, TOTALS_VERSION, metric_totals
from dashboard_metrics.core.upsert import upsert_rows
from dashboard_metrics.core.values import Agg, dump_buckets, parse_buckets

_PAIR_BATCH = 500
_FULL_SCAN_PAIRS = 2000

Pair = tuple[str, str]


def advance(monotonic: Agg, old: Agg, new: Agg) -> tuple[Agg, bool]:
    """The monotonic total after the true total moved from ``old`` to ``new``.

    Returns it and whether a correction (any decrease) was absorbed.
    """
    corrected = new.value < old.value or new.count < old.count
    value = monotonic.value + max(0.0, new.value - old.value)
    if new.buckets is None:
        count = monotonic.count + max(0, new.count - old.count)
        return Agg(value, count, None), corrected
    if monotonic.buckets is None or len(monotonic.buckets) != len(new.buckets):
        return new, corrected  # bucket layout changed: the series starts over
    previous = old.buckets if old.buckets and len(old.buckets) == len(new.buckets) else None
    previous = previous or (0,) * len(new.buckets)
    grown = tuple(
        m + max(0, n - o) for m, n, o in zip(monotonic.buckets, new.buckets, previous, strict=True)
    )
    corrected = corrected or any(n < o for n, o in zip(new.buckets, previous, strict=True))
    # _count is the +Inf bucket: keep it equal to the sum of the per-bucket counts.
    return Agg(value, sum(grown), grown), corrected


def _rescan(conn: Connection) -> set[Pair]:
    """Pairs whose monthly row count differs from the recorded one: one grouped scan of the
    tier (no bucket payloads). Needed only when monthly rows vanished."""
    monthly = MONTHLY.table
    grouped = conn.execute(
        select(monthly.c.organization_id, monthly.c.metric_name, func.count()).group_by(
            monthly.c.organization_id, monthly.c.metric_name
        )
    )
    known = select(
        metric_totals.c.organization_id, metric_totals.c.metric_name, metric_totals.c.month_rows
    )
    stored = {(org, name): rows for org, name, rows in conn.execute(known)}
    changed: set[Pair] = set()
    for org, name, rows in grouped:
        if stored.pop((org, name), None) != rows:
            changed.add((org, name))
    # Left over: pairs that lost their last monthly row (still holding a non-zero total).
    changed.update(pair for pair, rows in stored.items() if rows)
    return changed


def _count_rows(conn: Connection, table: Table, column: Any, pairs: Sequence[Pair]) -> int:
    key = tuple_(table.c.organization_id, table.c.metric_name)
    return sum(
        int(conn.execute(select(column).where(key.in_(list(batch)))).scalar() or 0)
        for batch in _batches(pairs)
    )


def _changed_pairs(conn: Connection, now: datetime) -> set[Pair]:
    """Pairs whose monthly rows this transaction wrote (stamped ``now``, found through the
    modified_at index) or deleted.

    A deleted monthly row leaves no stamp behind, but it leaves the tier with fewer rows than
    the totals record: when the counts disagree, a rescan finds the pairs.
    """
    monthly = MONTHLY.table
    touched = sorted(
        (org, name)
        for org, name in conn.execute(
            select(monthly.c.organization_id, monthly.c.metric_name)
            .where(monthly.c.modified_at >= now)
            .distinct()
        )
    )
    tier_rows = int(conn.execute(select(func.count()).select_from(monthly)).scalar() or 0)
    recorded = int(conn.execute(select(func.sum(metric_totals.c.month_rows))).scalar() or 0)
    if touched:
        tier_rows -= _count_rows(conn, monthly, func.count(), touched)
        recorded -= _count_rows(conn, metric_totals, func.sum(metric_totals.c.month_rows), touched)
    if tier_rows == recorded:
        return set(touched)
    return set(touched) | _rescan(conn)


def _batches(pairs: Sequence[Pair]) -> Iterable[Sequence[Pair]]:
    for start in range(0, len(pairs), _PAIR_BATCH):
        yield pairs[start : start + _PAIR_BATCH]


def _current(conn: Connection, pairs: Sequence[Pair]) -> dict[Pair, tuple[Agg, int, str]]:
    """True totals of ``pairs`` from the monthly tier: (total, monthly rows, metric type)."""
    monthly = MONTHLY.table
    key = tuple_(monthly.c.organization_id, monthly.c.metric_name)
    rows: dict[Pair, list[tuple[Any, float, int, str | None, str]]] = {}
    query = select(
        monthly.c.organization_id,
        monthly.c.metric_name,
        monthly.c.month,
        monthly.c.metric_value,
        monthly.c.metric_count,
        monthly.c.buckets,
        monthly.c.metric_type,
    )
    # Many pairs (a backfill): one pass over the tier beats thousands of key lookups.
    wanted = set(pairs) if len(pairs) > _FULL_SCAN_PAIRS else None
    queries = (
        [query]
        if wanted is not None
        else [query.where(key.in_(list(batch))) for batch in _batches(pairs)]
    )
    for statement in queries:
        for org, name, month, value, count, buckets, kind in conn.execute(statement):
            if wanted is None or (org, name) in wanted:
                rows.setdefault((org, name), []).append((str(month), value, count, buckets, kind))
    out: dict[Pair, tuple[Agg, int, str]] = {}
    for pair, items in rows.items():
        items.sort(key=lambda item: item[0])  # a fixed summation order: identical floats
        value, count, buckets = 0.0, 0, None
        for _month, v, c, raw, _kind in items:
            value += float(v)
            count += int(c)
            parsed = parse_buckets(raw)
            if parsed is not None and buckets is not None and len(buckets) == len(parsed):
                buckets = tuple(a + b for a, b in zip(buckets, parsed, strict=True))
            elif parsed is not None:
                buckets = parsed
        out[pair] = (Agg(value, count, buckets), len(items), items[-1][4])
    return out


def _stored(conn: Connection, pairs: Sequence[Pair]) -> dict[Pair, dict[str, Any]]:
    key = tuple_(metric_totals.c.organization_id, metric_totals.c.metric_name)
    out: dict[Pair, dict[str, Any]] = {}
    for batch in _batches(pairs):
        for row in conn.execute(select(metric_totals).where(key.in_(list(batch)))):
            out[(row.organization_id, row.metric_name)] = dict(row._mapping)
    return out


def refresh_totals(conn: Connection, now: datetime) -> None:
    """Called inside every writing transaction (tick, backfill, cleanup) after its writes.

    Recomputes only the pairs whose monthly rows changed: the cost follows the change, plus
    two counts over the monthly tier.
    """
    pairs = sorted(_changed_pairs(conn, now))
    if not pairs:
        return
    current = _current(conn, pairs)
    stored = _stored(conn, pairs)
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        new, month_rows, kind = current.get(pair, (None, 0, ""))
        old_row = stored.get(pair)
        if old_row is None:
            if new is None:
                continue
            monotonic, corrected = new, False
        else:
            kind = old_row["metric_type"]
            old = Agg(
                old_row["total_value"],
                old_row["total_count"],
                parse_buckets(old_row["total_buckets"]),
            )
            if new is None:  # every monthly row gone: the true total is zero
                new = Agg(0.0, 0, None if old.buckets is None else (0,) * len(old.buckets))
            before = Agg(
                old_row["monotonic_value"],
                old_row["monotonic_count"],
                parse_buckets(old_row["monotonic_buckets"]),
            )
            monotonic, corrected = advance(before, old, new)
        rows.append(
            {
                "organization_id": pair[0],
                "metric_name": pair[1],
                "metric_type": kind,
                "month_rows": month_rows,
                "total_value": new.value,
                "total_count": new.count,
                "total_buckets": dump_buckets(new.buckets),
                "monotonic_value": monotonic.value,
                "monotonic_count": monotonic.count,
                "monotonic_buckets": dump_buckets(monotonic.buckets),
                "corrected_at": now if corrected else (old_row or {}).get("corrected_at"),
                "modified_at": now,
            }
        )
    keys = ["organization_id", "metric_name"]
    updates = [c.name for c in metric_totals.columns if c.name not in keys]
    upsert_rows(conn, metric_totals, rows, keys, updates)
    state.put(conn, {TOTALS_VERSION: int(state.get(conn, TOTALS_VERSION) or 0) + 1}, now)
