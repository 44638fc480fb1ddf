"""All-time totals per organization and metric, with monotonic values for /metrics.

Revision ID: 0002
Revises: 0001
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from aggregator.totals import refresh_totals

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_totals",
        sa.Column("organization_id", sa.Text(), nullable=False),
        sa.Column("metric_name", sa.String(64), nullable=False),
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
        sa.PrimaryKeyConstraint("organization_id", "metric_name", name="metric_totals_pkey"),
    )
    # refresh_totals finds the monthly rows of its own transaction by their stamp.
    op.create_index(
        "ix_event_metrics_monthly_modified_at", "event_metrics_monthly", ["modified_at"]
    )
    # An upgrade over existing rollups: fill the totals now rather than at the next write
    # (a quiet system might not write for a long time). With the table empty, every pair of
    # the monthly tier counts as changed.
    refresh_totals(op.get_bind(), datetime.now(UTC))


def downgrade() -> None:
    op.drop_index("ix_event_metrics_monthly_modified_at", table_name="event_metrics_monthly")
    op.drop_table("metric_totals")
