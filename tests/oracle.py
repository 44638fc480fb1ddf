"""A deliberately naive oracle: every metric computed in Python from raw source rows.

It shares nothing with the aggregator's SQL: it reads whole tables row by row and follows the
metric definitions of the README's metric table literally.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import METRICS

Event = tuple[str, str, datetime, float]  # organization, metric, created_at, value
Dims = tuple[str, str, str]  # model, workflow, deployment ('' for none)
DimEvent = tuple[str, str, datetime, float, Dims]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _rows(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(table))]


def events(source: Engine) -> list[Event]:
    return [event[:4] for event in dimension_events(source)]  # type: ignore[misc]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def dimension_events(source: Engine) -> list[DimEvent]:
    """Every event with its model, workflow and deployment, as the catalogue's dimension
    paths read literally ('' where the event has none or its metric does not carry one)."""
    orgs = {row["id"]: row["organization_id"] for row in _rows(source, st.organization)}
    known = set(orgs.values())
    workflows = {row["id"]: row for row in _rows(source, st.workflow)}
    executions = {row["id"]: row for row in _rows(source, st.workflow_execution)}
    deployments = {row["id"]: row for row in _rows(source, st.api_deployment)}
    pipelines = {row["id"]: row for row in _rows(source, st.pipeline)}
    pages = _rows(source, st.page_usage)
    pages_by_run: dict[str, int] = defaultdict(int)
    for row in pages:
        pages_by_run[row["run_id"]] += row["pages_processed"]

    def workflow_org(workflow_id: Any) -> str | None:
        workflow = workflows.get(workflow_id)
        return None if workflow is None else orgs.get(workflow["organization_id"])

    files = {row["id"]: row for row in _rows(source, st.workflow_file_execution)}

    def run_dims(execution: dict[str, Any] | None) -> Dims:
        if execution is None:
            return ("", "", "")
        return ("", _text(execution["workflow_id"]), _text(execution["pipeline_id"]))

    out: list[DimEvent] = []
    for row in files.values():
        execution = executions.get(row["workflow_execution_id"])
        org = None if execution is None else workflow_org(execution["workflow_id"])
        if org is None:
            continue
        when = _utc(row["created_at"])
        dims = run_dims(execution)
        if row["status"] == "COMPLETED":
            out.append((org, "documents_processed", when, 1.0, dims))
        if row["status"] == "ERROR":
            out.append((org, "failed_pages", when, float(pages_by_run.get(row["id"], 0)), dims))
    for row in pages:
        if row["organization_id"] in known:
            file = files.get(row["run_id"])
            execution = None if file is None else executions.get(file["workflow_execution_id"])
            out.append(
                (
                    row["organization_id"],
                    "pages_processed",
                    _utc(row["created_at"]),
                    float(row["pages_processed"]),
                    run_dims(execution),
                )
            )
    for row in _rows(source, st.usage):
        org = orgs.get(row["organization_id"])
        if org is None or row["usage_type"] != "llm":
            continue
        when = _utc(row["created_at"])
        execution = executions.get(row["execution_id"])
        deployment_id = "" if execution is None else _text(execution["pipeline_id"])
        dims = (_text(row["model_name"]), _text(row["workflow_id"]), deployment_id)
        out.append((org, "llm_calls", when, 1.0, dims))
        out.append((org, "llm_usage", when, float(row["cost_in_dollars"]), dims))
        out.append((org, "llm_tokens", when, float(row["total_tokens"]), dims))
        if row["llm_usage_reason"] == "challenge":
            out.append((org, "challenges", when, 1.0, dims))
        if row["llm_usage_reason"] == "summarize":
            out.append((org, "summarization_calls", when, 1.0, dims))
    for row in executions.values():
        when = _utc(row["created_at"])
        org = workflow_org(row["workflow_id"])
        dims = run_dims(row)
        if org is not None:
            out.append((org, "prompt_executions", when, 1.0, dims))
        deployment = deployments.get(row["pipeline_id"])
        if deployment is not None and orgs.get(deployment["organization_id"]):
            org = orgs[deployment["organization_id"]]
            out.append((org, "deployed_api_requests", when, 1.0, dims))
        pipeline = pipelines.get(row["pipeline_id"])
        if (
            pipeline is not None
            and pipeline["pipeline_type"] == "ETL"
            and orgs.get(pipeline["organization_id"])
        ):
            org = orgs[pipeline["organization_id"]]
            out.append((org, "etl_pipeline_executions", when, 1.0, dims))
    return out


def period_of(when: datetime, tier: str) -> datetime | date:
    if tier == "hourly":
        return when.replace(minute=0, second=0, microsecond=0)
    if tier == "daily":
        return when.date()
    return when.date().replace(day=1)


@dataclass
class Sums:
    value: float = 0.0
    count: int = 0
    buckets: list[int] = field(default_factory=list)

    def add(self, name: str, value: float) -> None:
        """One event of metric ``name``."""
        metric = METRICS[name]
        self.value += value
        self.count += 1
        if metric.is_histogram:
            if not self.buckets:
                self.buckets = [0] * (len(metric.buckets) + 1)
            self.buckets[bisect.bisect_left(metric.buckets, value)] += 1


def rollup(all_events: list[Event], tier: str) -> dict[tuple[str, Any, str], Sums]:
    cells: dict[tuple[str, Any, str], Sums] = {}
    for org, name, when, value in all_events:
        cells.setdefault((org, period_of(when, tier), name), Sums()).add(name, value)
    return cells


def breakdown_rollup(
    all_events: list[DimEvent], tier: str
) -> dict[tuple[str, Any, str, str, str, str], Sums]:
    """Per (organization, period, metric, model, workflow, deployment)."""
    cells: dict[tuple[str, Any, str, str, str, str], Sums] = {}
    for org, name, when, value, dims in all_events:
        metric = METRICS[name]
        if not metric.dimensions:
            continue
        carried = {d.value for d in metric.dimensions}
        model, workflow, deployment = (
            found if dim in carried else ""
            for dim, found in zip(("model", "workflow", "deployment"), dims, strict=True)
        )
        key = (org, period_of(when, tier), name, model, workflow, deployment)
        cells.setdefault(key, Sums()).add(name, value)
    return cells


def totals(all_events: list[Event]) -> dict[tuple[str, str], Sums]:
    """All-time totals per (organization, metric)."""
    out: dict[tuple[str, str], Sums] = {}
    for (org, _period, name), cell in rollup(all_events, "monthly").items():
        total = out.setdefault((org, name), Sums(buckets=[0] * len(cell.buckets)))
        total.value += cell.value
        total.count += cell.count
        total.buckets = [a + b for a, b in zip(total.buckets, cell.buckets, strict=True)]
    return out
