"""ANCHOR BASELINE (benchmark only): Unstract's backfill algorithm, re-implemented for comparison.

This is the algorithm of the anchor's ``backfill_metrics`` / ``aggregate_metrics_from_sources``
(reference sections 3.1 and 6.1), not ours: organizations one at a time in sorted order; per
organization one HOUR and one DAY query per metric config (the four LLM counters and the cost in
one combined query), windowed on ``created_at`` with inclusive bounds and the organization bound
as a parameter; HOUR rows go to the hourly tier, DAY rows to the daily tier and, summed by month
in Python, to the monthly tier; then one unbatched multi-row ``INSERT ... ON CONFLICT DO UPDATE``
per tier per organization (Django's ``bulk_create(update_conflicts=True)`` with client-side
binding), autocommit.

Deliberate differences, all in the baseline's favour: it counts events (the anchor stores 1,
bug 1) but computes no histogram bucket counts, and it does not read the remainder of a month
outside the window. ``llm_tokens`` (not an anchor metric) is one more metric config, as the
anchor would add it. The HITL metrics do not exist in this schema, so each organization costs
16 source queries instead of the anchor's 18.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg

S = "unstract"


@dataclass(frozen=True)
class Config:
    """One of the anchor's METRIC_CONFIGS: a query producing (period, value, count) per org."""

    metrics: tuple[tuple[str, str], ...]  # (metric_name, metric_type) per value column
    sql: str  # {bucket} is the date_trunc unit; %(org)s, %(start)s, %(end)s are bound


_WFE_ORG = (
    f"FROM {S}.workflow_file_execution wfe "
    f"JOIN {S}.workflow_execution we ON we.id = wfe.workflow_execution_id "
    f"JOIN {S}.workflow w ON w.id = we.workflow_id "
    "WHERE w.organization_id = %(org)s AND wfe.created_at >= %(start)s "
    "AND wfe.created_at <= %(end)s"
)
_PERIOD = "date_trunc('{bucket}', {column} AT TIME ZONE 'UTC') AS period"

CONFIGS: tuple[Config, ...] = (
    Config(
        (("documents_processed", "counter"),),
        f"SELECT {_PERIOD.format(bucket='{bucket}', column='wfe.created_at')}, "
        f"COUNT(wfe.id), COUNT(wfe.id) {_WFE_ORG} AND wfe.status = 'COMPLETED' "
        "GROUP BY 1 ORDER BY 1",
    ),
    Config(
        (("pages_processed", "histogram"),),
        f"SELECT {_PERIOD.format(bucket='{bucket}', column='created_at')}, "
        f"COALESCE(SUM(pages_processed), 0), COUNT(id) FROM {S}.page_usage "
        "WHERE organization_id = %(org_string)s AND created_at >= %(start)s "
        "AND created_at <= %(end)s GROUP BY 1 ORDER BY 1",
    ),
    # get_llm_metrics_combined: llm_calls, challenges, summarization_calls, llm_usage.
    Config(
        (
            ("llm_calls", "counter"),
            ("challenges", "counter"),
            ("summarization_calls", "counter"),
            ("llm_usage", "histogram"),
        ),
        f"SELECT {_PERIOD.format(bucket='{bucket}', column='created_at')}, "
        "COUNT(id), COUNT(id), "
        "COUNT(id) FILTER (WHERE llm_usage_reason = 'challenge'), "
        "COUNT(id) FILTER (WHERE llm_usage_reason = 'challenge'), "
        "COUNT(id) FILTER (WHERE llm_usage_reason = 'summarize'), "
        "COUNT(id) FILTER (WHERE llm_usage_reason = 'summarize'), "
        f"COALESCE(SUM(cost_in_dollars), 0), COUNT(id) FROM {S}.usage "
        "WHERE organization_id = %(org)s AND usage_type = 'llm' AND created_at >= %(start)s "
        "AND created_at <= %(end)s GROUP BY 1 ORDER BY 1",
    ),
    Config(
        (("deployed_api_requests", "counter"),),
        f"SELECT {_PERIOD.format(bucket='{bucket}', column='created_at')}, "
        f"COUNT(id), COUNT(id) FROM {S}.workflow_execution WHERE pipeline_id IN "
        f"(SELECT id FROM {S}.api_deployment WHERE organization_id = %(org)s) "
        "AND created_at >= %(start)s AND created_at <= %(end)s GROUP BY 1 ORDER BY 1",
    ),
    Config(
        (("etl_pipeline_executions", "counter"),),
        f"SELECT {_PERIOD.format(bucket='{bucket}', column='created_at')}, "
        f"COUNT(id), COUNT(id) FROM {S}.workflow_execution WHERE pipeline_id IN "
        f"(SELECT id FROM {S}.pipeline WHERE organization_id = %(org)s AND pipeline_type = 'ETL') "
        "AND created_at >= %(start)s AND created_at <= %(end)s GROUP BY 1 ORDER BY 1",
    ),
    Config(
        (("prompt_executions", "counter"),),
        f"SELECT {_PERIOD.format(bucket='{bucket}', column='we.created_at')}, "
        f"COUNT(we.id), COUNT(we.id) FROM {S}.workflow_execution we "
        f"JOIN {S}.workflow w ON w.id = we.workflow_id WHERE w.organization_id = %(org)s "
        "AND we.created_at >= %(start)s AND we.created_at <= %(end)s GROUP BY 1 ORDER BY 1",
    ),
    Config(
        (("failed_pages", "histogram"),),
        f"SELECT {_PERIOD.format(bucket='{bucket}', column='wfe.created_at')}, "
        "COALESCE(SUM(COALESCE((SELECT SUM(pu.pages_processed) "
        f"FROM {S}.page_usage pu WHERE pu.run_id = wfe.id::varchar "
        "GROUP BY pu.run_id LIMIT 1), 0)), 0), COUNT(wfe.id) "
        f"{_WFE_ORG} AND wfe.status = 'ERROR' GROUP BY 1 ORDER BY 1",
    ),
    Config(
        (("llm_tokens", "histogram"),),
        f"SELECT {_PERIOD.format(bucket='{bucket}', column='created_at')}, "
        f"COALESCE(SUM(total_tokens), 0), COUNT(id) FROM {S}.usage "
        "WHERE organization_id = %(org)s AND usage_type = 'llm' AND created_at >= %(start)s "
        "AND created_at <= %(end)s GROUP BY 1 ORDER BY 1",
    ),
)

Key = tuple[str, Any, str]  # (organization string id, period, metric_name)
Rows = dict[Key, tuple[str, float, int]]  # -> (metric_type, value, count)


@dataclass
class BaselineReport:
    organizations: int = 0
    source_queries: int = 0
    upsert_statements: int = 0
    rows: dict[str, int] | None = None


def _collect(
    conn: psycopg.Connection[Any], bucket: str, params: dict[str, Any], org: str
) -> tuple[Rows, int]:
    out: Rows = {}
    queries = 0
    for config in CONFIGS:
        rows = conn.execute(config.sql.format(bucket=bucket), params).fetchall()
        queries += 1
        for row in rows:
            period = row[0].replace(tzinfo=UTC)
            for index, (name, kind) in enumerate(config.metrics):
                value, count = row[1 + 2 * index], row[2 + 2 * index]
                if count:
                    out[(org, period, name)] = (kind, float(value), int(count))
    return out, queries


def _upsert(
    conn: psycopg.Connection[Any], table: str, period_column: str, rows: Rows, now: datetime
) -> int:
    """One statement for all of an organization's rows of a tier (bulk_create, no batch_size)."""
    if not rows:
        return 0
    values: list[Any] = []
    for (org, period, name), (kind, value, count) in rows.items():
        values.extend((org, period, name, kind, value, count, "default", "", now, now))
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    sql = (
        f'INSERT INTO {table} (organization_id, "{period_column}", metric_name, metric_type, '
        "metric_value, metric_count, project, tag, created_at, modified_at) "
        f'VALUES {placeholders} ON CONFLICT (organization_id, "{period_column}", metric_name, '
        "project, tag) DO UPDATE SET metric_type = EXCLUDED.metric_type, "
        "metric_value = EXCLUDED.metric_value, metric_count = EXCLUDED.metric_count, "
        "modified_at = EXCLUDED.modified_at"
    )
    with psycopg.ClientCursor(conn) as cursor:
        cursor.execute(sql, values)
    return 1


def run(url: str, start: datetime, end: datetime) -> BaselineReport:
    """Backfill [start, end] (inclusive, like the anchor) the anchor's way; ``url`` is libpq's."""
    report = BaselineReport(rows={"hourly": 0, "daily": 0, "monthly": 0})
    assert report.rows is not None
    with psycopg.connect(url, autocommit=True) as conn:
        orgs: Sequence[tuple[int, str]] = conn.execute(
            f"SELECT id, organization_id FROM {S}.organization ORDER BY id"
        ).fetchall()
        for pk, string_id in orgs:
            params = {"org": pk, "org_string": string_id, "start": start, "end": end}
            hourly, n_hour = _collect(conn, "hour", params, string_id)
            daily, n_day = _collect(conn, "day", params, string_id)
            monthly: Rows = {}
            for (org, day, name), (kind, value, count) in daily.items():
                key = (org, date(day.year, day.month, 1), name)
                _, old_value, old_count = monthly.get(key, (kind, 0.0, 0))
                monthly[key] = (kind, old_value + value, old_count + count)
            daily = {(o, p.date(), n): v for (o, p, n), v in daily.items()}
            report.source_queries += n_hour + n_day
            report.upsert_statements += _upsert(
                conn, "event_metrics_hourly", "timestamp", hourly, end
            )
            report.upsert_statements += _upsert(conn, "event_metrics_daily", "date", daily, end)
            report.upsert_statements += _upsert(
                conn, "event_metrics_monthly", "month", monthly, end
            )
            report.rows["hourly"] += len(hourly)
            report.rows["daily"] += len(daily)
            report.rows["monthly"] += len(monthly)
            report.organizations += 1
    return report
