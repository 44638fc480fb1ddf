"""Names of the workflows and deployments a breakdown's entries carry, resolved at read time
from the source tables (never stored): one query per request, for the ids present, scoped to
the organization.

A deployment id is an API deployment's (name: display_name, else api_name; type "API") or a
pipeline's (pipeline_name, pipeline_type: ETL, TASK, ...). An id found nowhere, or no id, has
null name and type.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, cast, func, literal, null, select, union_all
from sqlalchemy.engine import Engine

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import Dimension
from dashboard_metrics.core.schema import NO_VALUE
from dashboard_metrics.exporter.api.context import Api
from dashboard_metrics.exporter.api.dims import Breakdown
from dashboard_metrics.exporter.api.rollups import Cell
from dashboard_metrics.exporter.api.shape import Labels
from dashboard_metrics.exporter.dbcall import run_db

NameAndType = tuple[str | None, str | None]
# Every field a group may carry, in the order the entries carry them.
LABEL_FIELDS = (
    "model",
    "workflow",
    "workflow_name",
    "deployment",
    "deployment_name",
    "deployment_type",
)


@dataclass
class Names:
    workflows: dict[str, str] = field(default_factory=dict)  # canonical id -> name
    deployments: dict[str, NameAndType] = field(default_factory=dict)


def canonical(value: str) -> str | None:
    """The id's canonical UUID text (the source's ids are UUIDs; anything else matches none)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _ids(values: Iterable[str]) -> list[str]:
    return sorted({found for value in values if value and (found := canonical(value))})


def resolve(
    source: Engine, org: str, workflows: Iterable[str], deployments: Iterable[str]
) -> Names:
    workflow_ids, deployment_ids = _ids(workflows), _ids(deployments)
    names = Names()
    if not workflow_ids and not deployment_ids:
        return names
    o = st.organization
    org_pk = select(o.c.id).where(o.c.organization_id == org).scalar_subquery()
    parts: list[Any] = []
    if workflow_ids:
        w = st.workflow
        parts.append(
            select(literal("workflow"), w.c.id, w.c.workflow_name, cast(null(), String)).where(
                w.c.organization_id == org_pk, w.c.id.in_(workflow_ids)
            )
        )
    if deployment_ids:
        a, p = st.api_deployment, st.pipeline
        api_name = func.coalesce(func.nullif(a.c.display_name, ""), a.c.api_name)
        parts.append(
            select(literal("deployment"), a.c.id, api_name, literal("API")).where(
                a.c.organization_id == org_pk, a.c.id.in_(deployment_ids)
            )
        )
        parts.append(
            select(literal("deployment"), p.c.id, p.c.pipeline_name, p.c.pipeline_type).where(
                p.c.organization_id == org_pk, p.c.id.in_(deployment_ids)
            )
        )
    with source.connect() as conn:
        for kind, found_id, name, kind_of in conn.execute(union_all(*parts)).all():
            key = str(found_id)
            if kind == "workflow":
                names.workflows[key] = name
            else:
                names.deployments[key] = (name, kind_of)
    return names


def labeller(group_by: tuple[Dimension, ...], names: Names) -> Labels:
    """A group's fields: each grouped dimension's value ('' stored: null), workflows with their
    `workflow_name`, deployments with `deployment_name` and `deployment_type`."""

    def labels(group: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for dimension, value in zip(group_by, group, strict=True):
            out[dimension.value] = None if value == NO_VALUE else value
            key = canonical(value) if value else None
            if dimension is Dimension.WORKFLOW:
                out["workflow_name"] = names.workflows.get(key) if key else None
            elif dimension is Dimension.DEPLOYMENT:
                name, kind = names.deployments.get(key, (None, None)) if key else (None, None)
                out["deployment_name"] = name
                out["deployment_type"] = kind
        return out

    return labels


async def labels_for(api: Api, org: str, breakdown: Breakdown, cells: list[Cell]) -> Labels | None:
    """The labels of a breakdown's groups (None at organization level or without grouping)."""
    if not breakdown.group_by:
        return None
    present: dict[Dimension, set[str]] = {Dimension.WORKFLOW: set(), Dimension.DEPLOYMENT: set()}
    for index, dimension in enumerate(breakdown.group_by):
        if dimension in present:
            present[dimension].update(cell.group[index] for cell in cells)
    workflows, deployments = present[Dimension.WORKFLOW], present[Dimension.DEPLOYMENT]
    if not any(workflows) and not any(deployments):
        names = Names()
    else:
        names = await run_db(lambda: resolve(api.source, org, workflows, deployments))
    return labeller(breakdown.group_by, names)
