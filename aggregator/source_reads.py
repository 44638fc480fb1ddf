"""The source columns dashboard-metrics reads: the metrics (catalogue, change scans,
attribution snapshots, the breakdowns' dimensions and names) and the JSON API's source
endpoints (recent-activity/, workflow-token-usage/, the live endpoints).

`doctor` fails on these when they are missing or of another type family, and only warns about
every other column of the Unstract tables (a column the metrics never read, such as
`organization.restrict_connector_creation`, may be absent from older Unstract versions).
tests/test_unstract_schema.py drops every other column and checks every metric and endpoint.
"""

from __future__ import annotations

_EVENT = ("id", "created_at", "modified_at")

READ_COLUMNS: dict[str, frozenset[str]] = {
    "organization": frozenset({"id", "organization_id"}),
    "usage": frozenset(
        {
            *_EVENT,
            "organization_id",
            "execution_id",
            "workflow_id",
            "model_name",
            "run_id",
            "usage_type",
            "llm_usage_reason",
            "total_tokens",
            "cost_in_dollars",
        }
    ),
    "page_usage": frozenset({"id", "created_at", "organization_id", "run_id", "pages_processed"}),
    "workflow": frozenset({"id", "modified_at", "organization_id", "workflow_name"}),
    "pipeline": frozenset(
        {"id", "modified_at", "organization_id", "pipeline_type", "pipeline_name"}
    ),
    "api_deployment": frozenset(
        {"id", "modified_at", "organization_id", "display_name", "api_name"}
    ),
    "workflow_execution": frozenset({*_EVENT, "pipeline_id", "workflow_id", "status"}),
    "workflow_file_execution": frozenset(
        {*_EVENT, "workflow_execution_id", "file_name", "status", "execution_time"}
    ),
}


def is_read(table: str, column: str) -> bool:
    return column in READ_COLUMNS.get(table, frozenset())
