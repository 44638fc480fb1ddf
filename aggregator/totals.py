"""All-time totals per (organization, metric), maintained by the writer after each change so
that /metrics never aggregates history on a scrape.

Each row holds the true total (the sum over the monthly tier, which is kept forever) and a
*monotonic* total for Prometheus: it grows by every increase of the true total and ignores
decreases (a reconciliation that removes deleted source rows). Histograms apply the rule per
bucket, so bucket counts, ``_count`` and ``_sum`` never decrease either. ``monotonic - true``
is what corrections took away; /metrics exposes it as its own counter family.

``metric_breakdown_totals`` keeps the same per (organization, metric, model, workflow,
deployment) from the monthly breakdown tier, for the labelled families; a key whose true total
fell to zero keeps its row, so its monotonic value survives (a usage row's model edited moves
its events to another key: the old key's counter stays, the new one grows).

The tables live in the rollup database and is written inside the writer's transaction, so
every serve replica reads the same values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
from dashboard_metrics.core.schema import (
    BREAKDOWN_DIMS,
    BREAKDOWN_MONTHLY,
    MONTHLY,
    TOTALS_VERSION,
    metric_breakdown_totals,
    metric_totals,
)
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


def _rescan(conn: Connection, monthly: Table, totals: Table) -> set[Pair]:
    """Pairs whose monthly row count differs from the recorded one: one grouped scan of the
    tier (no bucket payloads). Needed only when monthly rows vanished."""
    pair = (monthly.c.organization_id, monthly.c.metric_name)
    grouped = conn.execute(select(*pair, func.count()).group_by(*pair))
    recorded = (totals.c.organization_id, totals.c.metric_name)
    known = select(*recorded, func.sum(totals.c.month_rows)).group_by(*recorded)
    stored = {(org, name): int(rows or 0) for org, name, rows in conn.execute(known)}
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


def changed_pairs(
    conn: Connection, now: datetime, monthly: Table = MONTHLY.table, totals: Table = metric_totals
) -> set[Pair]:
    """Pairs whose ``monthly`` rows this transaction wrote (stamped ``now``, found through the
    modified_at index) or deleted, against the month rows ``totals`` records.

    A deleted monthly row leaves no stamp behind, but it leaves the tier with fewer rows than
    the totals record: when the counts disagree, a rescan finds the pairs.
    """
    touched = sorted(
        (org, name)
        for org, name in conn.execute(
            select(monthly.c.organization_id, monthly.c.metric_name)
            .where(monthly.c.modified_at >= now)
            .distinct()
        )
    )
    tier_rows = int(conn.execute(select(func.count()).select_from(monthly)).scalar() or 0)
    recorded = int(conn.execute(select(func.sum(totals.c.month_rows))).scalar() or 0)
    if touched:
        tier_rows -= _count_rows(conn, monthly, func.count(), touched)
        recorded -= _count_rows(conn, totals, func.sum(totals.c.month_rows), touched)
    if tier_rows == recorded:
        return set(touched)
    return set(touched) | _rescan(conn, monthly, totals)


def _batches(pairs: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(pairs), _PAIR_BATCH):
        yield pairs[start : start + _PAIR_BATCH]


def refresh_totals(conn: Connection, now: datetime) -> None:
    """Called inside every writing transaction (tick, backfill, cleanup) after its writes.

    Recomputes only the pairs whose monthly rows changed, in each family: the cost follows the
    change, plus two counts over each monthly tier (organization rows and breakdowns). The
    breakdowns are found on their own tier: a usage row's model edited rewrites breakdown rows
    while the organization row keeps its numbers (and so its stamp).
    """
    changed = [_refresh(conn, now, kept) for kept in (ORGANIZATION_TOTALS, BREAKDOWN_TOTALS)]
    if any(changed):
        bump_version(conn, now)


def bump_version(conn: Connection, now: datetime) -> None:
    """Serve replicas rebuild their /metrics families when this moves."""
    state.put(conn, {TOTALS_VERSION: int(state.get(conn, TOTALS_VERSION) or 0) + 1}, now)


# -- one refresh for both families -----------------------------------------------------------


@dataclass(frozen=True)
class KeptTotals:
    """A totals table and the monthly tier it totals, per ``key`` (organization, metric and,
    for the breakdowns, the dimension values)."""

    monthly: Table
    totals: Table
    key: tuple[str, ...]


ORGANIZATION_TOTALS = KeptTotals(MONTHLY.table, metric_totals, ("organization_id", "metric_name"))
# /metrics sums the monotonic values of the label set it exposes.
BREAKDOWN_TOTALS = KeptTotals(
    BREAKDOWN_MONTHLY.table,
    metric_breakdown_totals,
    ("organization_id", "metric_name", *BREAKDOWN_DIMS),
)

TotalKey = tuple[str, ...]
_Month = tuple[str, float, int, str | None, str]  # month, value, count, buckets, metric type


def _current(
    conn: Connection, kept: KeptTotals, pairs: Sequence[Pair]
) -> dict[TotalKey, tuple[Agg, int, str]]:
    """True totals of every key of ``pairs`` from the monthly tier: (total, monthly rows,
    metric type)."""
    monthly = kept.monthly
    pair = tuple_(monthly.c.organization_id, monthly.c.metric_name)
    query = select(
        *(monthly.c[name] for name in kept.key),
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
        else [query.where(pair.in_(list(batch))) for batch in _batches(pairs)]
    )
    width = len(kept.key)
    rows: dict[TotalKey, list[_Month]] = {}
    for statement in queries:
        for row in conn.execute(statement):
            if wanted is None or (row[0], row[1]) in wanted:
                month, v, c, raw, kind = row[width:]
                rows.setdefault(tuple(row[:width]), []).append((str(month), v, c, raw, kind))
    return {key: _summed(items) for key, items in rows.items()}


def _summed(items: list[_Month]) -> tuple[Agg, int, str]:
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
    return Agg(value, count, buckets), len(items), items[-1][4]


def _stored(conn: Connection, kept: KeptTotals, pairs: Sequence[Pair]) -> dict[TotalKey, Any]:
    t = kept.totals
    pair = tuple_(t.c.organization_id, t.c.metric_name)
    out: dict[TotalKey, Any] = {}
    for batch in _batches(pairs):
        for row in conn.execute(select(t).where(pair.in_(list(batch)))):
            out[tuple(row._mapping[name] for name in kept.key)] = row._mapping
    return out


def _next_row(
    kept: KeptTotals,
    key: TotalKey,
    current: tuple[Agg, int, str] | None,
    old: Any,
    now: datetime,
) -> dict[str, Any]:
    """The stored row of ``key`` after the true total moved to ``current`` (None: no monthly
    row left, a total of zero whose monotonic value stays)."""
    if old is None:
        assert current is not None
        new, month_rows, kind = current
        monotonic, corrected = new, False
    else:
        before = Agg(old["total_value"], old["total_count"], parse_buckets(old["total_buckets"]))
        if current is None:
            zero = None if before.buckets is None else (0,) * len(before.buckets)
            current = (Agg(0.0, 0, zero), 0, old["metric_type"])
        new, month_rows, kind = current
        shown = Agg(
            old["monotonic_value"],
            old["monotonic_count"],
            parse_buckets(old["monotonic_buckets"]),
        )
        monotonic, corrected = advance(shown, before, new)
    return {
        **dict(zip(kept.key, key, strict=True)),
        "metric_type": kind,
        "month_rows": month_rows,
        "total_value": new.value,
        "total_count": new.count,
        "total_buckets": dump_buckets(new.buckets),
        "monotonic_value": monotonic.value,
        "monotonic_count": monotonic.count,
        "monotonic_buckets": dump_buckets(monotonic.buckets),
        "corrected_at": now if corrected else (old or {}).get("corrected_at"),
        "modified_at": now,
    }


def _refresh(conn: Connection, now: datetime, kept: KeptTotals) -> bool:
    """Refresh ``kept``'s totals of the (organization, metric) pairs whose monthly rows this
    transaction wrote or deleted; True when any changed. A key whose monthly rows are all gone
    keeps its row (a true total of zero), so its monotonic value survives."""
    pairs = sorted(changed_pairs(conn, now, kept.monthly, kept.totals))
    if not pairs:
        return False
    current = _current(conn, kept, pairs)
    stored = _stored(conn, kept, pairs)
    rows = [
        _next_row(kept, key, current.get(key), stored.get(key), now)
        for key in sorted(current.keys() | stored.keys())
    ]
    updates = [c.name for c in kept.totals.columns if c.name not in kept.key]
    upsert_rows(conn, kept.totals, rows, list(kept.key), updates)
    return bool(rows)
