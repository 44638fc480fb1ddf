"""Breakdown tiers: one row per organization, period, metric and dimension values (model,
workflow, deployment; '' where there is none).

Revision ID: 0004
Revises: 0003
"""

import json
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TABLES = (
    ("event_metrics_breakdown_hourly", "timestamp", sa.DateTime(timezone=True)),
    ("event_metrics_breakdown_daily", "date", sa.Date()),
    ("event_metrics_breakdown_monthly", "month", sa.Date()),
)
_DIMS = ("model", "workflow", "deployment")


def upgrade() -> None:
    for name, period, period_type in _TABLES:
        op.create_table(
            name,
            sa.Column("organization_id", sa.Text(), nullable=False),
            sa.Column(period, period_type, nullable=False),
            sa.Column("metric_name", sa.String(64), nullable=False),
            sa.Column("metric_type", sa.String(16), nullable=False),
            sa.Column("metric_value", sa.Float(), nullable=False),
            sa.Column("metric_count", sa.BigInteger(), nullable=False),
            sa.Column("buckets", sa.Text(), nullable=True),
            *(sa.Column(dim, sa.Text(), nullable=False, server_default="") for dim in _DIMS),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint(
                "organization_id", period, "metric_name", *_DIMS, name=f"{name}_pkey"
            ),
        )
        op.create_index(f"ix_{name}_{period}", name, [period])
    # An upgrade over existing rollups: their history has no breakdown rows yet, and a day
    # rebuilt from a few new hours would hold only those. Ask the next tick to recompute the
    # whole history (every tier, every organization), as generate-test-data asks for its range.
    _request_history(op.get_bind(), datetime.now(UTC))


# A frozen copy of what state.request_recompute wrote at 0004: a migration never imports live
# code.
def _request_history(conn: sa.engine.Connection, now: datetime) -> None:
    first = conn.execute(sa.text("SELECT min(month) FROM event_metrics_monthly")).scalar()
    if first is None:
        return  # nothing aggregated yet
    month = first if isinstance(first, date) else date.fromisoformat(str(first)[:10])
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    state = sa.table(
        "aggregator_state", sa.column("key"), sa.column("value"), sa.column("updated_at")
    )
    key = "recompute_requests"
    stored = conn.execute(sa.select(state.c.value).where(state.c.key == key)).scalar()
    requests = (json.loads(stored) if stored else None) or []
    requests.append([start.isoformat(), end.isoformat()])
    # Timestamps as the rollup tables store them: timestamptz on PostgreSQL, naive UTC on SQLite.
    stamp = now if conn.dialect.name == "postgresql" else now.replace(tzinfo=None)
    values = {"value": json.dumps(requests), "updated_at": stamp}
    if stored is None:
        conn.execute(sa.insert(state).values(key=key, **values))
    else:
        conn.execute(sa.update(state).where(state.c.key == key).values(**values))


def downgrade() -> None:
    for name, _, _ in _TABLES:
        op.drop_table(name)
