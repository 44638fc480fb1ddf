"""All-time totals per organization, metric and dimension values, with monotonic values for
/metrics' labelled families.

Revision ID: 0005
Revises: 0004
"""

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_DIMS = ("model", "workflow", "deployment")
_MONTHLY = "event_metrics_breakdown_monthly"


def upgrade() -> None:
    op.create_table(
        "metric_breakdown_totals",
        sa.Column("organization_id", sa.Text(), nullable=False),
        sa.Column("metric_name", sa.String(64), nullable=False),
        *(sa.Column(dim, sa.Text(), nullable=False, server_default="") for dim in _DIMS),
        sa.Column("metric_type", sa.String(16), nullable=False),
        sa.Column("month_rows", sa.BigInteger(), nullable=False),
        sa.Column("total_value", sa.Float(), nullable=False),
        sa.Column("total_count", sa.BigInteger(), nullable=False),
        sa.Column("total_buckets", sa.Text(), nullable=True),
        sa.Column("monotonic_value", sa.Float(), nullable=False),
        sa.Column("monotonic_count", sa.BigInteger(), nullable=False),
        sa.Column("monotonic_buckets", sa.Text(), nullable=True),
        sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id", "metric_name", *_DIMS, name="metric_breakdown_totals_pkey"
        ),
    )
    # refresh_totals finds the breakdown rows of its own transaction by their stamp.
    op.create_index(f"ix_{_MONTHLY}_modified_at", _MONTHLY, ["modified_at"])
    # Breakdowns a backfill already wrote: their totals now, not at the next write.
    _fill_totals(op.get_bind(), datetime.now(UTC))


# A frozen copy of what the writer's refresh does for an empty table (every total new, the
# monotonic total equal to the true one): a migration never imports live code.
def _fill_totals(conn: sa.engine.Connection, now: datetime) -> None:
    monthly = sa.table(
        _MONTHLY,
        *(sa.column(name) for name in ("organization_id", "metric_name", *_DIMS, "month")),
        *(sa.column(name) for name in ("metric_value", "metric_count", "buckets", "metric_type")),
    )
    keys: dict[tuple[Any, ...], list[tuple[str, float, int, str | None, str]]] = {}
    for org, name, model, workflow, deployment, month, value, count, buckets, kind in conn.execute(
        sa.select(monthly)
    ):
        key = (org, name, model, workflow, deployment)
        keys.setdefault(key, []).append((str(month), value, count, buckets, kind))
    # Timestamps as the rollup tables store them: timestamptz on PostgreSQL, naive UTC on SQLite.
    stamp = now if conn.dialect.name == "postgresql" else now.replace(tzinfo=None)
    rows = []
    for key, items in sorted(keys.items()):
        items.sort(key=lambda item: item[0])
        total, events, slots = 0.0, 0, None
        for _month, value, count, raw, _kind in items:
            total += float(value)
            events += int(count)
            parsed = None if raw is None else [int(x) for x in json.loads(raw)]
            if parsed is not None and slots is not None and len(slots) == len(parsed):
                slots = [a + b for a, b in zip(slots, parsed, strict=True)]
            elif parsed is not None:
                slots = parsed
        dumped = None if slots is None else json.dumps(slots)
        rows.append(
            {
                **dict(zip(("organization_id", "metric_name", *_DIMS), key, strict=True)),
                "metric_type": items[-1][4],
                "month_rows": len(items),
                "total_value": total,
                "total_count": events,
                "total_buckets": dumped,
                "monotonic_value": total,
                "monotonic_count": events,
                "monotonic_buckets": dumped,
                "corrected_at": None,
                "modified_at": stamp,
            }
        )
    if rows:
        totals = sa.table("metric_breakdown_totals", *(sa.column(name) for name in rows[0]))
        conn.execute(sa.insert(totals), rows)


def downgrade() -> None:
    op.drop_index(f"ix_{_MONTHLY}_modified_at", table_name=_MONTHLY)
    op.drop_table("metric_breakdown_totals")
