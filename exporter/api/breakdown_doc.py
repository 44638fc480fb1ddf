"""The OpenAPI pieces of the breakdowns (`group_by` and the dimension filters), for
exporter/openapi.py: derived from the API's own constants."""

from __future__ import annotations

from typing import Any

from dashboard_metrics.exporter.api.dims import DIMENSION_NAMES
from dashboard_metrics.exporter.api.names import LABEL_FIELDS
from dashboard_metrics.exporter.api.params import DIMENSION_TEXT_MAX, GROUP_BY_MAX

S = dict[str, Any]


def q(name: str, schema: S, description: str) -> S:
    """An optional query parameter (exporter/openapi.py's too)."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


BREAKDOWN_RULES = (
    "Breakdowns: summary/, series/ and their live twins take `group_by` (one or two of "
    f"{', '.join(DIMENSION_NAMES)}, comma-separated) and the filters "
    f"{', '.join(f'`{name}`' for name in DIMENSION_NAMES)} (exact match on the stored id or "
    "name). Each entry then carries its grouped dimensions' values (null: the events have none), "
    "workflows with `workflow_name`, deployments with `deployment_name` and `deployment_type` "
    "(API for an API deployment, the pipeline's type otherwise; null when unknown), resolved at "
    "read time from the source. Without `metric_name`, only the metrics carrying every requested "
    "dimension are answered; a `metric_name` that does not carry one is a 400 naming the "
    "parameter (`attr`: group_by, model, workflow or deployment) and the metric."
)
GROUP_BY = {
    **q(
        "group_by",
        {
            "type": "array",
            "items": {"type": "string", "enum": list(DIMENSION_NAMES)},
            "minItems": 1,
            "maxItems": GROUP_BY_MAX,
            "uniqueItems": True,
        },
        "Split every number by one or two dimensions, comma-separated (e.g. model,deployment). "
        "A dimension the metric does not carry is a 400.",
    ),
    "style": "form",
    "explode": False,
}
DIMENSION_TEXT: S = {
    "type": "string",
    "minLength": 1,
    "maxLength": DIMENSION_TEXT_MAX,
    "pattern": "^[^\\u0000-\\u001f\\u007f]*$",
}
DIMENSION_FILTERS = [
    q(
        "model",
        DIMENSION_TEXT,
        "Only LLM events of this model (usage.model_name); metrics without a model: 400.",
    ),
    q("workflow", DIMENSION_TEXT, "Only events of this workflow id."),
    q(
        "deployment",
        DIMENSION_TEXT,
        "Only events of this deployment id (an API deployment's or a pipeline's id).",
    ),
]
NULLABLE_STR: S = {"type": ["string", "null"]}
# The fields a breakdown entry carries besides a metric's own (only the grouped ones).
LABELS: dict[str, S] = {name: NULLABLE_STR for name in LABEL_FIELDS}
BREAKDOWN_400 = (
    "Invalid parameter (attr names it); also a `group_by` or dimension filter (`model`, "
    "`workflow`, `deployment`) the requested metric_name does not carry: attr names the "
    "parameter and the detail the metric and dimension (e.g. "
    '"pages_processed has no dimension model").'
)
