"""Checks on generated dashboards without a Grafana server: structure, queries and macros.

Used by the tests: every panel has an id, a description, a unit and a data source; ids and uids
are unique; every `$variable` a query uses is defined; Grafana's macros are substituted so that
PromQL can go to promtool/Prometheus and SQL to PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dashboard_metrics.dashboards.tiered import (
    DEFAULT_SCHEMA,
    DEFAULT_SOURCE_SCHEMA,
    SCHEMA_VARIABLE,
    SOURCE_SCHEMA_VARIABLE,
)

BUILTIN_VARIABLES = {
    "__interval",
    "__rate_interval",
    "__range",
    "__timeFilter",
    "__timeFrom",
    "__timeTo",
    "__all",
}
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref_id: str
    kind: str  # "promql" | "sql"
    text: str
    instant: bool


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                kind, text = "promql", target["expr"]
            else:
                kind, text = "sql", target["rawSql"]
            yield Query(
                dashboard["uid"],
                panel["title"],
                target["refId"],
                kind,
                text,
                bool(target.get("instant")),
            )


def variables_used(text: str) -> set[str]:
    return {name for name in _VARIABLE.findall(text) if name not in BUILTIN_VARIABLES}


def problems(dashboard: dict[str, Any]) -> list[str]:
    """Everything wrong with one dashboard's structure (empty when it is sound)."""
    found: list[str] = []
    uid = dashboard.get("uid", "?")
    defined = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    ids = [p.get("id") for p in panels(dashboard)]
    if None in ids:
        found.append(f"{uid}: a panel has no id")
    if len(ids) != len(set(ids)):
        found.append(f"{uid}: duplicate panel ids")
    for panel in panels(dashboard):
        title = panel.get("title", "?")
        if panel.get("type") == "row":
            continue
        if not panel.get("description"):
            found.append(f"{uid}/{title}: no description")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            found.append(f"{uid}/{title}: no unit")
        source = panel.get("datasource") or {}
        if not source.get("uid") or not source.get("type"):
            found.append(f"{uid}/{title}: no data source")
        if not panel.get("targets"):
            found.append(f"{uid}/{title}: no queries")
        legend = panel.get("options", {}).get("legend")
        if legend is not None and not legend.get("showLegend"):
            found.append(f"{uid}/{title}: legend hidden")
        used = variables_used(str(source)) | {
            name for target in panel.get("targets", []) for name in variables_used(str(target))
        }
        found.extend(f"{uid}/{title}: ${name} is not defined" for name in used - defined)
    for variable in dashboard.get("templating", {}).get("list", []):
        undefined = variables_used(str(variable.get("datasource", ""))) - defined
        found.extend(f"{uid}: variable {variable['name']} uses ${n}" for n in undefined)
    return found


def promql_for_test(expr: str, organization: str = ".*") -> str:
    """Grafana's macros replaced as the tests (and promtool) need them."""
    for macro, value in (
        ("$__rate_interval", "1m"),
        ("$__interval", "1m"),
        ("$__range", "1h"),
        ("${organization}", organization),
        ("$organization", organization),
    ):
        expr = expr.replace(macro, value)
    return expr


def sql_for_test(sql: str, start: str, end: str, organization: str) -> str:
    """`$__timeFilter(col)`, `$__timeFrom()`, `$__timeTo()`, `$organization` and the rollup
    and source schema constants (their defaults) substituted."""
    sql = sql.replace(f"${{{SCHEMA_VARIABLE}}}", DEFAULT_SCHEMA)
    sql = sql.replace(f"${{{SOURCE_SCHEMA_VARIABLE}}}", DEFAULT_SOURCE_SCHEMA)
    sql = re.sub(r"\$__timeFilter\(([^)]*)\)", rf"\1 BETWEEN '{start}' AND '{end}'", sql)
    sql = sql.replace("$__timeFrom()", f"'{start}'").replace("$__timeTo()", f"'{end}'")
    return sql.replace("${organization}", f"'{organization}'").replace(
        "$organization", f"'{organization}'"
    )
