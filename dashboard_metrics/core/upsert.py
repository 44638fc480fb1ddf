"""Bulk INSERT ... ON CONFLICT DO UPDATE for PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

BATCH_SIZE = 1000


def upsert_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    key_columns: Sequence[str],
    update_columns: Sequence[str],
) -> int:
    if not rows:
        return 0
    module: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = module.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(key_columns),
        set_={column: statement.excluded[column] for column in update_columns},
    )
    for start in range(0, len(rows), BATCH_SIZE):
        conn.execute(statement, list(rows[start : start + BATCH_SIZE]))
    return len(rows)
