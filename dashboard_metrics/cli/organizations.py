"""Which organizations exist: in the source's `organization` table and in the rollups."""

from __future__ import annotations

from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine

from dashboard_metrics.cli.errors import CommandError
from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.schema import MONTHLY


def in_source(source: Engine) -> dict[str, str]:
    """organization_id -> display name, from the source (empty when it has no such table)."""
    schema = source.get_execution_options().get("schema_translate_map", {}).get(st.SOURCE_SCHEMA)
    with source.connect() as conn:
        if not inspect(conn).has_table("organization", schema=schema):
            return {}
        org = st.organization
        rows = conn.execute(
            select(org.c.organization_id, org.c.display_name).order_by(org.c.organization_id)
        )
        return {row.organization_id: row.display_name or "" for row in rows}


def in_rollups(rollup: Engine) -> list[str]:
    """Organizations with any rollup row (the monthly tier holds every organization's months)."""
    table = MONTHLY.table
    with rollup.connect() as conn:
        rows = conn.execute(
            select(table.c.organization_id).distinct().order_by(table.c.organization_id)
        )
        return [row.organization_id for row in rows]


def known(rollup: Engine, source: Engine) -> list[str]:
    return sorted(set(in_source(source)) | set(in_rollups(rollup)))


def require(rollup: Engine, source: Engine, org: str) -> None:
    everyone = known(rollup, source)
    if org not in everyone:
        listed = ", ".join(everyone[:5]) + (", ..." if len(everyone) > 5 else "")
        raise CommandError(
            f"organization {org!r} is neither in the source nor in the rollups"
            + (f" (known: {listed})" if everyone else " (there are none yet)")
        )
