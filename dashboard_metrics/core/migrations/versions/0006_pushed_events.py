"""Pushed events: the accepted events of POST /api/v1/unstract/{org_id}/events/, unique per
(organization, id), and their partial sums.

Each ingest transaction stores its new events and, beside them, their sums per (organization,
hour, metric, label values): the partials. A tick folds the partials committed since it last
looked into the hourly rows, so its work follows the partials (one per series and batch), not
the events. It finds them by commit order: on PostgreSQL the inserting transaction's id
(``commit_xid``, compared against the last tick's snapshot, so an early transaction that commits
late is still found); on SQLite, where writers take turns, an ``AUTOINCREMENT`` sequence (never
reused, even after retention empties the table).

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


def _dims() -> list[sa.Column[Any]]:
    return [sa.Column(dim, sa.Text(), nullable=False, server_default="") for dim in _DIMS]


def upgrade() -> None:
    op.create_table(
        "pushed_events",
        sa.Column("organization_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("metric_name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        *_dims(),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "event_id", name="pushed_events_pkey"),
    )
    op.create_index("ix_pushed_events_event_time", "pushed_events", ["event_time"])
    partial: list[sa.Column[Any]] = [
        sa.Column("organization_id", sa.Text(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metric_name", sa.String(64), nullable=False),
        *_dims(),
        sa.Column("metric_value", sa.Float(), nullable=False),
        sa.Column("metric_count", sa.BigInteger(), nullable=False),
        sa.Column("buckets", sa.Text(), nullable=True),
    ]
    if op.get_bind().dialect.name == "postgresql":
        op.create_table("pushed_event_partials", *partial)
        # xid8 (PostgreSQL 13+), written by its default only.
        op.execute(
            "ALTER TABLE pushed_event_partials"
            " ADD COLUMN commit_xid xid8 NOT NULL DEFAULT pg_current_xact_id()"
        )
        op.create_index(
            "ix_pushed_event_partials_commit_xid", "pushed_event_partials", ["commit_xid"]
        )
    else:
        op.create_table(
            "pushed_event_partials",
            sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
            *partial,
            sqlite_autoincrement=True,
        )
    op.create_index("ix_pushed_event_partials_hour", "pushed_event_partials", ["hour"])


def downgrade() -> None:
    op.drop_table("pushed_event_partials")
    op.drop_table("pushed_events")
