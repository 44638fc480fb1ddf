"""Alembic environment: run with the connection handed over by `core/migrate.py`."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table="dashboard_metrics_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
