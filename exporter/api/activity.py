"""recent-activity/ and workflow-token-usage/: read from the source tables, set-based."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import Text, and_, case, cast, func, literal, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Subquery

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.schema import in_ranges
from dashboard_metrics.exporter.api import caching
from dashboard_metrics.exporter.api.anyrange import ANY_RANGE
from dashboard_metrics.exporter.api.context import Api
from dashboard_metrics.exporter.api.errors import invalid
from dashboard_metrics.exporter.api.params import DateRange, given, parse_int, parse_range
from dashboard_metrics.exporter.dbcall import run_db

DEPLOYMENT_TYPES = ("API", "ETL", "TASK", "WF")
MAX_USAGE_RANGE = timedelta(days=30)
MAX_ACTIVITY = 50
MAX_LIMIT_PARAM = 10**12 - 1  # parse_int's twelve digits: larger is clamped, not refused


def _org_pk(conn: Connection, org: str) -> int | None:
    query = select(st.organization.c.id).where(st.organization.c.organization_id == org)
    return conn.execute(query).scalar_one_or_none()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _recent_files(conn: Connection, pk: int, limit: int) -> Sequence[Any]:
    """The organization's newest file executions with their workflow."""
    wfe, we, wf = st.workflow_file_execution, st.workflow_execution, st.workflow
    return conn.execute(
        select(
            wfe.c.id,
            wfe.c.workflow_execution_id,
            we.c.pipeline_id,
            wfe.c.file_name,
            wfe.c.status,
            wf.c.workflow_name,
            wfe.c.created_at,
            wfe.c.execution_time,
        )
        .select_from(
            wfe.join(we, we.c.id == wfe.c.workflow_execution_id).join(
                wf, wf.c.id == we.c.workflow_id
            )
        )
        .where(wf.c.organization_id == pk)
        .order_by(wfe.c.created_at.desc(), wfe.c.id)
        .limit(limit)
    ).all()


def _run_kinds(conn: Connection, pk: int, pipeline_ids: set[str]) -> dict[str, str]:
    """Unstract's mapping: an ETL pipeline of the org is "etl", else an API deployment of the
    org is "api", else (manual runs, TASK pipelines, anything unknown) "workflow"."""
    kinds: dict[str, str] = {}
    if not pipeline_ids:
        return kinds
    apis = select(st.api_deployment.c.id).where(
        st.api_deployment.c.id.in_(pipeline_ids), st.api_deployment.c.organization_id == pk
    )
    kinds.update({aid: "api" for (aid,) in conn.execute(apis)})
    etl = select(st.pipeline.c.id).where(
        st.pipeline.c.id.in_(pipeline_ids),
        st.pipeline.c.organization_id == pk,
        st.pipeline.c.pipeline_type == "ETL",
    )
    kinds.update({pid: "etl" for (pid,) in conn.execute(etl)})
    return kinds


def _run_usage(conn: Connection, pk: int, run_ids: list[str]) -> dict[str, tuple[int, float]]:
    """Tokens and cost per file execution (usage.run_id)."""
    if not run_ids:
        return {}
    u = st.usage
    totals = (
        select(u.c.run_id, func.sum(u.c.total_tokens), func.sum(u.c.cost_in_dollars))
        .where(u.c.run_id.in_(run_ids), u.c.organization_id == pk)
        .group_by(u.c.run_id)
    )
    return {rid: (int(t or 0), float(c or 0)) for rid, t, c in conn.execute(totals)}


def recent(conn: Connection, org: str, limit: int) -> list[dict[str, Any]]:
    pk = _org_pk(conn, org)
    if pk is None:
        return []
    files = _recent_files(conn, pk, limit)
    kinds = _run_kinds(conn, pk, {row.pipeline_id for row in files if row.pipeline_id})
    usage = _run_usage(conn, pk, [row.id for row in files])
    return [
        {
            "id": row.id,
            "execution_id": row.workflow_execution_id,
            "type": kinds.get(row.pipeline_id or "", "workflow"),
            "file_name": row.file_name,
            "status": row.status,
            "workflow_name": row.workflow_name,
            "created_at": row.created_at.isoformat(),
            "execution_time": row.execution_time,
            "total_tokens": usage.get(row.id, (0, 0.0))[0],
            "cost": round(usage.get(row.id, (0, 0.0))[1], 4),
        }
        for row in files
    ]


async def recent_activity(request: web.Request, api: Api, org: str) -> web.Response:
    async def compute() -> dict[str, Any]:
        # Above 50 is clamped to 50, as Unstract does; the body's `limit` says what was used.
        limit = min(parse_int(request.query, "limit", 10, 1, MAX_LIMIT_PARAM), MAX_ACTIVITY)

        def read() -> list[dict[str, Any]]:
            with api.source.connect() as conn:
                return recent(conn, org, limit)

        return {"activity": await run_db(read), "limit": limit}

    return await caching.cached_response(request, api, org, "recent_activity", compute)


def _deployments(pk: int, kind: str) -> Subquery:
    if kind == "API":
        a = st.api_deployment
        return (
            select(a.c.id.label("id"), a.c.display_name.label("name"))
            .where(a.c.organization_id == pk)
            .subquery("d")
        )
    if kind == "WF":
        w = st.workflow
        return (
            select(w.c.id.label("id"), w.c.workflow_name.label("name"))
            .where(w.c.organization_id == pk)
            .subquery("d")
        )
    p = st.pipeline
    return (
        select(p.c.id.label("id"), p.c.pipeline_name.label("name"))
        .where(p.c.organization_id == pk, p.c.pipeline_type == kind)
        .subquery("d")
    )


def _executions(conn: Connection, d: Subquery, runs: Any) -> Sequence[Any]:
    """Per deployment: executions, completed, failed, first and last start."""
    we = st.workflow_execution
    return conn.execute(
        select(
            d.c.id,
            d.c.name,
            func.count(we.c.id),
            func.sum(case((we.c.status == "COMPLETED", 1), else_=0)),
            func.sum(case((we.c.status == "ERROR", 1), else_=0)),
            func.min(we.c.created_at),
            func.max(we.c.created_at),
        )
        .select_from(runs)
        .group_by(d.c.id, d.c.name)
    ).all()


def _llm_calls(
    conn: Connection, d: Subquery, runs: Any, hours: list[tuple[datetime, datetime]]
) -> dict[str, tuple[int, float, int]]:
    """Per deployment: tokens, cost and LLM calls of its executions within ``hours``."""
    we, u = st.workflow_execution, st.usage
    llm = conn.execute(
        select(
            d.c.id, func.sum(u.c.total_tokens), func.sum(u.c.cost_in_dollars), func.count(u.c.id)
        )
        .select_from(
            runs.join(
                u,
                and_(
                    u.c.execution_id == cast(we.c.id, Text),
                    u.c.usage_type == literal("llm"),
                    in_ranges(u.c.created_at, hours),
                ),
            )
        )
        .group_by(d.c.id)
    )
    return {row[0]: (int(row[1] or 0), float(row[2] or 0), int(row[3])) for row in llm}


def _pages(conn: Connection, d: Subquery, runs: Any) -> dict[str, int]:
    """Per deployment: pages processed by its executions' files."""
    we, wfe, pages = st.workflow_execution, st.workflow_file_execution, st.page_usage
    page_rows = conn.execute(
        select(d.c.id, func.sum(pages.c.pages_processed))
        .select_from(
            runs.join(wfe, wfe.c.workflow_execution_id == we.c.id).join(
                pages, pages.c.run_id == cast(wfe.c.id, Text)
            )
        )
        .group_by(d.c.id)
    )
    return {row[0]: int(row[1] or 0) for row in page_rows}


def deployment_usage(conn: Connection, org: str, kind: str, rng: DateRange) -> list[dict[str, Any]]:
    pk = _org_pk(conn, org)
    if pk is None:
        return []
    we = st.workflow_execution
    d = _deployments(pk, kind)
    if kind == "WF":
        on = and_(we.c.workflow_id == d.c.id, we.c.pipeline_id.is_(None))
    else:
        on = we.c.pipeline_id == d.c.id
    hours = [(rng.first_hour, rng.end_hour)]
    runs = d.join(we, and_(on, in_ranges(we.c.created_at, hours)))
    executions = _executions(conn, d, runs)
    tokens = _llm_calls(conn, d, runs, hours)
    page_sums = _pages(conn, d, runs)
    out = []
    for dep_id, name, count, completed, failed, first, last in executions:
        total_tokens, cost, calls = tokens.get(dep_id, (0, 0.0, 0))
        out.append(
            {
                "deployment_id": dep_id,
                "deployment_name": name,
                "total_tokens": total_tokens,
                "total_cost": round(cost, 4),
                "call_count": calls,
                "execution_count": int(count),
                "completed_executions": int(completed or 0),
                "failed_executions": int(failed or 0),
                "total_pages_processed": page_sums.get(dep_id, 0),
                "first_execution_at": _iso(first),
                "last_execution_at": _iso(last),
            }
        )
    out.sort(key=lambda e: (-e["total_tokens"], e["deployment_name"], e["deployment_id"]))
    return out


async def workflow_token_usage(request: web.Request, api: Api, org: str) -> web.Response:
    async def compute() -> dict[str, Any]:
        query = request.query
        raw = given(query, "deployment_type") or "API"
        kind = raw.upper()
        if kind not in DEPLOYMENT_TYPES:
            raise invalid(
                "deployment_type",
                f'"{raw}" is not a valid choice; expected one of {", ".join(DEPLOYMENT_TYPES)}.',
            )
        rng = parse_range(query, api.clock(), 30, ANY_RANGE)
        # Unstract's DeploymentUsageQuerySerializer: a range longer than 30 days keeps its end
        # and starts exactly 30 days (720 hours) before it, with range_truncated set.
        truncated = rng.end - rng.start > MAX_USAGE_RANGE
        if truncated:
            rng = DateRange(rng.end - MAX_USAGE_RANGE, rng.end, rng.tz)

        def read() -> list[dict[str, Any]]:
            with api.source.connect() as conn:
                return deployment_usage(conn, org, kind, rng)

        return {
            "start_date": rng.start.isoformat(),
            "end_date": rng.end.isoformat(),
            "deployment_type": kind,
            "range_truncated": truncated,
            "deployments": await run_db(read),
        }

    return await caching.cached_response(request, api, org, "workflow_token_usage", compute)
