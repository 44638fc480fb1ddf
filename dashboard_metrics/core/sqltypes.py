"""Column types that behave the same on PostgreSQL and SQLite.

SQLite has no timestamptz and no uuid: timestamps are stored as naive UTC text in one fixed
format (so string comparison orders them), uuids as their canonical 36-character text (so
``page_usage.run_id = CAST(wfe.id AS TEXT)`` matches on both dialects).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from dashboard_metrics.core.timeutil import as_utc, as_utc_or_none


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; naive-UTC text on SQLite. Always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return as_utc_or_none(value)


class UUIDText(TypeDecorator[str]):
    """uuid on PostgreSQL, 36-character text elsewhere; Python values are canonical strings."""

    impl = String(36)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=False))
        return dialect.type_descriptor(String(36))

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return str(uuid.UUID(str(value)))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)
