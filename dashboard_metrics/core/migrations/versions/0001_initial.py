"""Rollup tiers and aggregator state.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIERS = (
    ("event_metrics_hourly", "timestamp", sa.DateTime(timezone=True)),
    ("event_metrics_daily", "date", sa.Date()),
    ("event_metrics_monthly", "month", sa.Date()),
)


def upgrade() -> None:
    for name, period, period_type in TIERS:
        op.create_table(
            name,
            sa.Column("organization_id", sa.Text(), nullable=False),
            sa.Column(period, period_type, nullable=False),
            sa.Column("metric_name", sa.String(64), nullable=False),
            sa.Column("metric_type", sa.String(16), nullable=False),
            sa.Column("metric_value", sa.Float(), nullable=False),
            sa.Column("metric_count", sa.BigInteger(), nullable=False),
            sa.Column("buckets", sa.Text(), nullable=True),
            sa.Column("project", sa.String(64), nullable=False, server_default="default"),
            sa.Column("tag", sa.String(64), nullable=False, server_default=""),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint(
                "organization_id", period, "metric_name", "project", "tag", name=f"{name}_pkey"
            ),
        )
        op.create_index(f"ix_{name}_{period}", name, [period])
        op.create_index(f"ix_{name}_metric_{period}", name, ["metric_name", period])
    op.create_table(
        "aggregator_state",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("aggregator_state")
    for name, _, _ in TIERS:
        op.drop_table(name)
