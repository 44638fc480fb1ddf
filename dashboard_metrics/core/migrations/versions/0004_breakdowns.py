"""Breakdown tiers: one row per organization, period, metric and dimension values (model,
workflow, deployment; '' where there is none).

Revision ID: 0004
Revises: 0003
"""

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
            *(sa.Column(dim, sa.Text(), nullable=False, server_default="") for dim in _DIMS),
            sa.Column("metric_value", sa.Float(), nullable=False),
            sa.Column("metric_count", sa.BigInteger(), nullable=False),
            sa.Column("buckets", sa.Text(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint(
                "organization_id", period, "metric_name", *_DIMS, name=f"{name}_pkey"
            ),
        )
        op.create_index(f"ix_{name}_{period}", name, [period])
        op.create_index(f"ix_{name}_metric_{period}", name, ["metric_name", period])


def downgrade() -> None:
    for name, _, _ in _TABLES:
        op.drop_table(name)
