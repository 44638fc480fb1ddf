"""Pushed events: the accepted events of POST /api/v1/unstract/{org_id}/events/, unique per
(organization, id), kept for the tick to fold into the tiers.

The tick finds the events committed since it last looked by their commit order: on PostgreSQL
the inserting transaction's id (``commit_xid``, compared against the last tick's snapshot, so an
early transaction that commits late is still found); on SQLite, where writers take turns, an
``AUTOINCREMENT`` sequence (never reused, even after retention empties the table).

Revision ID: 0006
Revises: 0005
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_DIMS = ("model", "workflow", "deployment")


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("organization_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("metric_name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(dim, sa.Text(), nullable=False, server_default="") for dim in _DIMS),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_table(
            "pushed_events",
            *_columns(),
            sa.PrimaryKeyConstraint("organization_id", "event_id", name="pushed_events_pkey"),
        )
        # xid8 (PostgreSQL 13+), written by its default only.
        op.execute(
            "ALTER TABLE pushed_events"
            " ADD COLUMN commit_xid xid8 NOT NULL DEFAULT pg_current_xact_id()"
        )
        op.create_index("ix_pushed_events_commit_xid", "pushed_events", ["commit_xid"])
    else:
        op.create_table(
            "pushed_events",
            sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
            *_columns(),
            sa.UniqueConstraint("organization_id", "event_id", name="pushed_events_id_key"),
            sqlite_autoincrement=True,
        )
    # Recomputing an hour and retention read by time.
    op.create_index("ix_pushed_events_event_time", "pushed_events", ["event_time"])


def downgrade() -> None:
    op.drop_table("pushed_events")
