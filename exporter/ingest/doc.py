"""The OpenAPI description of POST /api/v1/unstract/{org_id}/events/ (built per call: the
pushed metrics are the metrics file's, installed at start-up)."""

from __future__ import annotations

from typing import Any

from dashboard_metrics.core import catalogue
from dashboard_metrics.exporter.ingest.events import (
    FUTURE,
    MAX_EVENTS,
    MAX_ID_LENGTH,
    MAX_LABEL_LENGTH,
)
from dashboard_metrics.exporter.ingest.view import MAX_BODY_BYTES

S = dict[str, Any]

DESCRIPTION = (
    "Push events of the metrics declared in DASHBOARD_METRICS_METRICS_FILE; the regular tick "
    "folds them into every tier. Authorised by a key of DASHBOARD_METRICS_INGEST_KEYS (a read "
    "key is a 403); without ingest keys, open only while the read API is. Idempotent by "
    "(organization, id): a retried batch answers its events as duplicates. Each event is "
    "checked alone (`PushedEvent`): one that breaks a rule is listed in `rejected` by its "
    "index and the others are stored, committed before the answer. "
    f"At most {MAX_EVENTS} events and {MAX_BODY_BYTES} bytes (5 MB) per request, else 413."
)
LABEL: S = {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_LENGTH}


def pushed_event() -> S:
    pushed = [m.name for m in catalogue.pushed_metrics()]
    metric: S = {"type": "string", "description": "A pushed metric (built-in ones are refused)."}
    if pushed:
        metric["enum"] = pushed
    dimensions = sorted({str(d) for m in catalogue.pushed_metrics() for d in m.dimensions})
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
            "metric": metric,
            "value": {
                "type": "number",
                "default": 1,
                "description": "Finite; at least 0 for a counter.",
            },
            "timestamp": {
                "type": ["string", "number"],
                "description": "RFC 3339 date-time (naive: UTC) or epoch seconds; default now. "
                "Not older than the hourly retention (and the events' retention), nor more "
                f"than {int(FUTURE.total_seconds() // 60)} minutes ahead.",
            },
            "labels": {
                "type": "object",
                "properties": {name: LABEL for name in dimensions},
                "additionalProperties": False,
                "description": "Only the metric's declared dimensions.",
            },
        },
        "required": ["id", "metric"],
        "additionalProperties": False,
    }


def schemas() -> dict[str, S]:
    return {
        "PushedEvent": pushed_event(),
        "EventBatch": {
            "type": "object",
            "properties": {
                "events": {
                    "type": "array",
                    # Any item: a non-conforming event is rejected alone (in a 200), not the
                    # request; `PushedEvent` says what is accepted. No maxItems: more is a 413,
                    # which a schema cannot express.
                    "items": {"description": "A PushedEvent."},
                    "description": f"At most {MAX_EVENTS} events (more: 413).",
                }
            },
            "required": ["events"],
            "additionalProperties": False,
        },
        "EventsAccepted": {
            "type": "object",
            "properties": {
                "accepted": {"type": "integer", "description": "Rows stored now."},
                "duplicates": {
                    "type": "integer",
                    "description": "Ids stored before, or repeated in this batch.",
                },
                "rejected": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"index": {"type": "integer"}, "error": {"type": "string"}},
                        "required": ["index", "error"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["accepted", "duplicates", "rejected"],
            "additionalProperties": False,
        },
    }


def _ref(name: str) -> S:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(text: str) -> S:
    return {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}


def operation(org_parameter: S) -> S:
    return {
        "operationId": "pushEvents",
        "description": DESCRIPTION,
        "parameters": [org_parameter],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("EventBatch")}},
        },
        "responses": {
            "200": {
                "description": "Stored (accepted + duplicates + rejected = events sent)",
                "content": {"application/json": {"schema": _ref("EventsAccepted")}},
            },
            "400": _error("Malformed JSON, no `events` list, or an invalid parameter"),
            "401": _error("Missing or invalid key"),
            "403": _error("A read key, or the key does not cover this organization"),
            "404": _error("No such path"),
            "413": _error(f"Over {MAX_BODY_BYTES} bytes or {MAX_EVENTS} events"),
            "503": _error("Database unavailable"),
        },
        "security": [{"bearer": []}, {}],
    }
