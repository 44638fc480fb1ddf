"""What each attributing source row (workflow, pipeline, API deployment) last attributed.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_attribution",
        sa.Column("source_table", sa.String(64), nullable=False),
        sa.Column("row_id", sa.String(64), nullable=False),
        sa.Column("attribution", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("source_table", "row_id", name="source_attribution_pkey"),
    )


def downgrade() -> None:
    op.drop_table("source_attribution")
