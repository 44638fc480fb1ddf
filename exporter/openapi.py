"""The OpenAPI 3 document of the JSON API, served at /api/openapi.json (anonymous)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

# The API's own constants, so the document cannot drift from what the handlers accept.
from dashboard_metrics.core import catalogue
from dashboard_metrics.exporter.api.activity import DEPLOYMENT_TYPES, MAX_LIMIT_PARAM
from dashboard_metrics.exporter.api.breakdown_doc import (
    BREAKDOWN_400,
    BREAKDOWN_RULES,
    DIMENSION_FILTERS,
    GROUP_BY,
    LABELS,
    q,
)
from dashboard_metrics.exporter.api.names import LABEL_FIELDS
from dashboard_metrics.exporter.api.params import (
    EARLIEST,
    GRANULARITIES,
    LATEST,
    SOURCES,
    TEXT_MAX,
)
from dashboard_metrics.exporter.api.rollup_views import ORDERINGS
from dashboard_metrics.exporter.ingest import doc as ingest_doc
from dashboard_metrics.exporter.ingest.view import PATH as EVENTS_PATH

S = dict[str, Any]

NUM: S = {"type": "number"}
INT: S = {"type": "integer"}
STR: S = {"type": "string"}
DT: S = {"type": "string", "format": "date-time"}
NDT: S = {"type": ["string", "null"], "format": "date-time"}
# Free text the API compares: bounded, without control characters.
TEXT: S = {"type": "string", "maxLength": TEXT_MAX, "pattern": "^[^\\u0000-\\u001f\\u007f]*$"}

RULES = (
    "Every query parameter is honoured or refused: an unknown or repeated parameter, or an "
    "invalid value, is a 400 whose `attr` names the parameter. Integers are ASCII digits only; "
    f"dates lie from {EARLIEST.date()} up to {LATEST.date()}; text is at most {TEXT_MAX} "
    "characters without control characters; an empty value is refused (omit the parameter for "
    "its default), except for the text filters `project` and `tag`, where it is a value. "
    "Every error is JSON (`Error`). " + BREAKDOWN_RULES
)


def obj(props: dict[str, S], optional: tuple[str, ...] = ()) -> S:
    return {
        "type": "object",
        "properties": props,
        "required": [k for k in props if k not in optional],
        "additionalProperties": False,
    }


def arr(items: S) -> S:
    return {"type": "array", "items": items}


def ref(name: str) -> S:
    return {"$ref": f"#/components/schemas/{name}"}


ORG = {
    "name": "org_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": TEXT_MAX, "pattern": "^[^/\\u0000-\\u001f\\u007f]+$"},
    "description": "The organization's string id (organization.organization_id).",
}
START = q(
    "start_date",
    STR,
    "ISO-8601 date or date-time (naive: in `tz`). Default: end_date minus the endpoint's "
    "default range. Hours that begin in [start_date, end_date) are selected.",
)
END = q("end_date", STR, "ISO-8601 date or date-time (naive: in `tz`). Default: now.")
TZ = q(
    "tz",
    STR,
    "IANA time zone for day/week buckets and naive bounds (default UTC). Other than UTC it "
    "needs the hourly tier and whole-hour offsets, else 400.",
)
# Its enum is filled in per document: the catalogue gains the pushed metrics at start-up.
METRIC = q("metric_name", {"type": "string"}, "Only this metric.")
PROJECT = q("project", TEXT, "Only this project.")
TAG = q("tag", TEXT, "Only this tag.")
SOURCE = q(
    "source",
    {"type": "string", "enum": list(SOURCES)},
    "Rollup tier; auto: <=7 days hourly, <=90 daily, else monthly (partial edges from "
    "finer tiers).",
)
GRAN = q(
    "granularity",
    {"type": "string", "enum": list(GRANULARITIES)},
    "Bucket size (default day; weeks start on Monday).",
)
REFRESH = q(
    "refresh",
    {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]},
    "true: bypass cache reads (the result is still stored).",
)
RANGE = [START, END, TZ]
FILTERS = [METRIC, PROJECT, TAG]
BREAKDOWN = [GROUP_BY, *DIMENSION_FILTERS]

SUMMARY_ITEM = obj(
    {
        "metric_name": STR,
        "metric_type": STR,
        **LABELS,
        "total_value": NUM,
        "total_count": INT,
        "average_value": NUM,
        "min_value": NUM,
        "max_value": NUM,
    },
    optional=LABEL_FIELDS,
)
POINT = obj({"timestamp": DT, "value": NUM, "count": INT})
SERIES_ITEM = obj(
    {
        "metric_name": STR,
        "metric_type": STR,
        "project": STR,
        "tag": STR,
        **LABELS,
        "data": arr(POINT),
        "total_value": NUM,
        "total_count": INT,
    },
    optional=LABEL_FIELDS,
)
LIVE_ITEM = obj(
    {
        "metric_name": STR,
        "metric_type": STR,
        **LABELS,
        "data": arr(obj({"timestamp": DT, "value": NUM})),
        "total_value": NUM,
        "error": STR,
    },
    optional=("error", *LABEL_FIELDS),
)
ERROR = obj(
    {
        "type": STR,
        "errors": arr(obj({"code": STR, "detail": STR, "attr": {"type": ["string", "null"]}})),
        "message": STR,
    }
)
CHECK = obj({"status": STR, "message": STR}, optional=("message",))

SCHEMAS: dict[str, S] = {
    "Error": ERROR,
    "Summary": obj(
        {
            "start_date": DT,
            "end_date": DT,
            "source": {"type": "string", "enum": ["hourly", "daily", "monthly"]},
            "summary": arr(SUMMARY_ITEM),
        }
    ),
    "Series": obj(
        {
            "start_date": DT,
            "end_date": DT,
            "granularity": STR,
            "source": STR,
            "series": arr(SERIES_ITEM),
        }
    ),
    "Overview": obj(
        {
            "period": obj({"start_date": DT, "end_date": DT, "days": INT}),
            "totals": arr(obj({"metric_name": STR, "total_value": NUM, "total_count": INT})),
            "daily_trend": arr(
                obj(
                    {
                        "date": {"type": "string", "format": "date"},
                        "metrics": {"type": "object", "additionalProperties": NUM},
                    }
                )
            ),
        }
    ),
    "LiveSummary": obj(
        {
            "start_date": DT,
            "end_date": DT,
            "source": {"const": "live"},
            "summary": arr(SUMMARY_ITEM),
            "partial_errors": arr(STR),
        },
        optional=("partial_errors",),
    ),
    "LiveSeries": obj(
        {
            "start_date": DT,
            "end_date": DT,
            "granularity": STR,
            "source": {"const": "live"},
            "series": arr(LIVE_ITEM),
            "partial_errors": arr(STR),
        },
        optional=("partial_errors",),
    ),
    "RecentActivity": obj(
        {
            "activity": arr(
                obj(
                    {
                        "id": STR,
                        "execution_id": STR,
                        "type": {"type": "string", "enum": ["etl", "api", "workflow"]},
                        "file_name": STR,
                        "status": STR,
                        "workflow_name": STR,
                        "created_at": DT,
                        "execution_time": {"type": ["number", "null"]},
                        "total_tokens": INT,
                        "cost": NUM,
                    }
                )
            ),
            "limit": INT,
        }
    ),
    "WorkflowTokenUsage": obj(
        {
            "start_date": DT,
            "end_date": DT,
            "deployment_type": {"type": "string", "enum": list(DEPLOYMENT_TYPES)},
            "range_truncated": {"type": "boolean"},
            "deployments": arr(
                obj(
                    {
                        "deployment_id": STR,
                        "deployment_name": STR,
                        "total_tokens": INT,
                        "total_cost": NUM,
                        "call_count": INT,
                        "execution_count": INT,
                        "completed_executions": INT,
                        "failed_executions": INT,
                        "total_pages_processed": INT,
                        "first_execution_at": NDT,
                        "last_execution_at": NDT,
                    }
                )
            ),
        }
    ),
    "Health": obj(
        {
            "healthy": {"type": "boolean"},
            "checks": obj({"database": CHECK, "cache": CHECK}),
            "timestamp": DT,
        }
    ),
    "RowPage": obj(
        {
            "count": INT,
            "next": {"type": ["string", "null"]},
            "previous": {"type": ["string", "null"]},
            "results": arr(
                obj(
                    {
                        "id": STR,
                        "timestamp": DT,
                        "metric_name": STR,
                        "metric_type": STR,
                        "metric_value": NUM,
                        "metric_count": INT,
                        "project": STR,
                        "tag": STR,
                        "created_at": DT,
                    }
                )
            ),
        }
    ),
}


def _responses(schema: str, unhealthy: bool = False, breakdown: bool = False) -> S:
    def err(text: str) -> S:
        return {"description": text, "content": {"application/json": {"schema": ref("Error")}}}

    out: S = {
        "200": {"description": "OK", "content": {"application/json": {"schema": ref(schema)}}},
        "400": err(BREAKDOWN_400 if breakdown else "Invalid parameter (attr names it)"),
        "401": err("Missing or invalid API key"),
        "403": err("The key does not cover this organization"),
        "404": err("No such path"),
    }
    unavailable = ref("Health") if unhealthy else ref("Error")
    out["503"] = {
        "description": "Database unavailable",
        "content": {"application/json": {"schema": unavailable}},
    }
    return out


OPERATIONS: list[tuple[str, str, str, list[S]]] = [
    (
        "",
        "listHourlyRows",
        "RowPage",
        [
            *FILTERS,
            q("page", {"type": "integer", "minimum": 1}, "Page number (default 1)."),
            q(
                "page_size",
                {"type": "integer", "minimum": 1, "maximum": 1000},
                "Rows per page (default 100, at most 1000).",
            ),
            q(
                "ordering",
                {"type": "string", "enum": list(ORDERINGS)},
                "Sort order (default -timestamp).",
            ),
        ],
    ),
    ("summary/", "summary", "Summary", [*RANGE, *FILTERS, *BREAKDOWN, SOURCE, REFRESH]),
    ("series/", "series", "Series", [*RANGE, *FILTERS, *BREAKDOWN, SOURCE, GRAN, REFRESH]),
    ("overview/", "overview", "Overview", [*RANGE, REFRESH]),
    (
        "live-summary/",
        "liveSummary",
        "LiveSummary",
        [*RANGE, *FILTERS, *BREAKDOWN, SOURCE, REFRESH],
    ),
    (
        "live-series/",
        "liveSeries",
        "LiveSeries",
        [*RANGE, *FILTERS, *BREAKDOWN, SOURCE, GRAN, REFRESH],
    ),
    (
        "recent-activity/",
        "recentActivity",
        "RecentActivity",
        [
            q(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT_PARAM},
                "How many (default 10); above 50 is clamped to 50, as Unstract does, and the "
                "body's `limit` is the limit applied.",
            ),
            REFRESH,
        ],
    ),
    (
        "workflow-token-usage/",
        "workflowTokenUsage",
        "WorkflowTokenUsage",
        [
            *RANGE,
            q(
                "deployment_type",
                {
                    "type": "string",
                    "pattern": "^([Aa][Pp][Ii]|[Ee][Tt][Ll]|[Tt][Aa][Ss][Kk]|[Ww][Ff])$",
                },
                "API, ETL, TASK or WF (any case; default API).",
            ),
            REFRESH,
        ],
    ),
    ("health/", "health", "Health", []),
]


def parameter_names() -> dict[str, frozenset[str]]:
    """Endpoint suffix -> the query parameters it accepts (any other is a 400)."""
    return {
        suffix: frozenset(p["name"] for p in params if p["in"] == "query")
        for suffix, _op, _schema, params in OPERATIONS
    }


def _current(parameter: S) -> S:
    """``parameter`` with the catalogue's metric names as they are now."""
    if parameter is not METRIC:
        return parameter
    return {**METRIC, "schema": {**METRIC["schema"], "enum": list(catalogue.METRIC_NAMES)}}


def document() -> S:
    paths: S = {}
    for suffix, op_id, schema, params in OPERATIONS:
        paths[f"/api/v1/unstract/{{org_id}}/metrics/{suffix}"] = {
            "get": {
                "operationId": op_id,
                "parameters": [ORG, *(_current(p) for p in params)],
                "responses": _responses(
                    schema, unhealthy=schema == "Health", breakdown=GROUP_BY in params
                ),
                "security": [{"bearer": []}, {}],
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "dashboard-metrics JSON API", "version": "1", "description": RULES},
        "paths": {**paths, EVENTS_PATH: {"post": ingest_doc.operation(ORG)}},
        "components": {
            "schemas": {**SCHEMAS, **ingest_doc.schemas()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def serve(_request: web.Request) -> web.Response:
    return web.json_response(document())


def setup(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", serve)
