"""Create or upgrade the rollup schema (Alembic)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "dashboard_metrics_alembic_version"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


# Serializes concurrent `migrate` runs (init containers, systemd units starting together): the
# second waits, then finds the schema at head and does nothing. SQLite: BEGIN IMMEDIATE.
MIGRATE_LOCK_KEY = 0x6D696772  # "migr"


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK_KEY})
            # The engine's search_path names our schema; create it (the name is validated)
            # unless it exists: a role owning only its schema may not create one.
            schema = conn.exec_driver_sql("SHOW search_path").scalar()
            present = text("SELECT 1 FROM pg_namespace WHERE nspname = :name")
            if conn.execute(present, {"name": schema}).first() is None:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        config = _config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()
