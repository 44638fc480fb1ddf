"""SQLAlchemy Core definitions of the Unstract tables the metrics read.

Names, columns and types are those of a real Unstract database (usage, not usage_v2; the
organization's bigint PK versus its string ``organization_id``; ``page_usage.organization_id``
holding the string). The tables live in the symbolic schema ``SOURCE_SCHEMA``, which each source
engine maps to the configured schema (``unstract`` on PostgreSQL, none on SQLite).
These definitions are read-only against a real database; ``generate-test-data`` creates them for
the embedded default and the tests.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from dashboard_metrics.core.sqltypes import UTCDateTime, UUIDText

SOURCE_SCHEMA = "dm_source"

source_metadata = MetaData(schema=SOURCE_SCHEMA)


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_at", UTCDateTime, nullable=False),
        Column("modified_at", UTCDateTime, nullable=False),
    ]


organization = Table(
    "organization",
    source_metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("display_name", String(64), nullable=False),
    Column("organization_id", String(64), nullable=False, unique=True),
    Column("created_by_id", BigInteger, nullable=True),
    Column("modified_by_id", BigInteger, nullable=True),
    Column("allowed_token_limit", Integer, nullable=False, default=-1),
    Column("restrict_llm_adapter_creation", Boolean, nullable=False, default=False),
    Column("restrict_connector_creation", Boolean, nullable=False, default=False),
    *_timestamps(),
)

usage = Table(
    "usage",
    source_metadata,
    Column("id", UUIDText, primary_key=True),
    Column("organization_id", BigInteger, ForeignKey(organization.c.id), nullable=True),
    Column("workflow_id", String(255), nullable=True),
    Column("execution_id", String(255), nullable=True),
    Column("adapter_instance_id", String(255), nullable=False),
    Column("run_id", UUIDText, nullable=True),
    Column("usage_type", String(255), nullable=False),
    Column("llm_usage_reason", String(255), nullable=True),
    Column("model_name", String(255), nullable=False),
    Column("embedding_tokens", Integer, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("total_tokens", Integer, nullable=False),
    Column("cost_in_dollars", Float, nullable=False),
    Column("project_id", UUIDText, nullable=True),
    Column("prompt_id", UUIDText, nullable=True),
    Column("execution_time_ms", Integer, nullable=True),
    Column("status", String(16), nullable=True),
    Column("error_message", Text, nullable=True),
    *_timestamps(),
    Index("usage_run_id_idx", "run_id"),
    Index("usage_execution_id_idx", "execution_id"),
)

page_usage = Table(
    "page_usage",
    source_metadata,
    Column("id", UUIDText, primary_key=True),
    Column("organization_id", Text, nullable=False, default="mock_org"),
    Column("file_name", String(255), nullable=False),
    Column("file_type", String(128), nullable=False),
    Column("run_id", String(255), nullable=False),
    Column("pages_processed", Integer, nullable=False),
    Column("file_size", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("idx_page_usage_run_id", "run_id"),
    Index("idx_page_usage_created_org", "created_at", "organization_id"),
)

workflow = Table(
    "workflow",
    source_metadata,
    Column("id", UUIDText, primary_key=True),
    Column("organization_id", BigInteger, ForeignKey(organization.c.id), nullable=True),
    Column("workflow_name", String(128), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("status", String(16), nullable=False, default=""),
    Column("workflow_owner_id", BigInteger, nullable=True),
    Column("deployment_type", String(16), nullable=False, default="DEFAULT"),
    Column("source_settings", JSON, nullable=True),
    Column("destination_settings", JSON, nullable=True),
    Column("max_file_execution_count", Integer, nullable=True),
    Column("created_by_id", BigInteger, nullable=True),
    Column("modified_by_id", BigInteger, nullable=True),
    Column("shared_to_org", Boolean, nullable=False, default=False),
    *_timestamps(),
)

pipeline = Table(
    "pipeline",
    source_metadata,
    Column("id", UUIDText, primary_key=True),
    Column("pipeline_name", String(32), nullable=False, default=""),
    Column("workflow_id", UUIDText, ForeignKey(workflow.c.id), nullable=False),
    Column("app_id", Text, nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("scheduled", Boolean, nullable=False, default=False),
    Column("cron_string", Text, nullable=True),
    Column("pipeline_type", String(16), nullable=False, default="DEFAULT"),
    Column("run_count", Integer, nullable=False, default=0),
    Column("last_run_time", UTCDateTime, nullable=True),
    Column("last_run_status", String(16), nullable=False, default="YET_TO_START"),
    Column("app_icon", String(200), nullable=True),
    Column("app_url", String(200), nullable=True),
    Column("access_control_bundle_id", Text, nullable=True),
    Column("created_by_id", BigInteger, nullable=True),
    Column("modified_by_id", BigInteger, nullable=True),
    Column("shared_to_org", Boolean, nullable=False, default=False),
    Column("organization_id", BigInteger, ForeignKey(organization.c.id), nullable=True),
    *_timestamps(),
)

api_deployment = Table(
    "api_deployment",
    source_metadata,
    Column("id", UUIDText, primary_key=True),
    Column("display_name", String(30), nullable=False, default="default api"),
    Column("description", String(255), nullable=False, default=""),
    Column("workflow_id", UUIDText, ForeignKey(workflow.c.id), nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("api_endpoint", String(255), nullable=False, unique=True),
    Column("api_name", String(30), nullable=False),
    Column("created_by_id", BigInteger, nullable=True),
    Column("modified_by_id", BigInteger, nullable=True),
    Column("shared_to_org", Boolean, nullable=False, default=False),
    Column("organization_id", BigInteger, ForeignKey(organization.c.id), nullable=True),
    *_timestamps(),
)

workflow_execution = Table(
    "workflow_execution",
    source_metadata,
    Column("id", UUIDText, primary_key=True),
    Column("pipeline_id", UUIDText, nullable=True),
    Column("task_id", UUIDText, nullable=True),
    Column("workflow_id", UUIDText, ForeignKey(workflow.c.id), nullable=True),
    Column("execution_mode", String(16), nullable=False),
    Column("execution_method", String(16), nullable=False),
    Column("execution_type", String(16), nullable=False),
    Column("execution_log_id", String(255), nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("result_acknowledged", Boolean, nullable=False, default=False),
    Column("total_files", Integer, nullable=False, default=0),
    Column("successful_files", Integer, nullable=True),
    Column("failed_files", Integer, nullable=True),
    Column("error_message", String(256), nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("execution_time", Float, nullable=False, default=0.0),
    *_timestamps(),
    Index("we_workflow_created_idx", "workflow_id", "created_at"),
    Index("we_pipeline_created_idx", "pipeline_id", "created_at"),
)

workflow_file_execution = Table(
    "workflow_file_execution",
    source_metadata,
    Column("id", UUIDText, primary_key=True),
    Column(
        "workflow_execution_id",
        UUIDText,
        ForeignKey(workflow_execution.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("file_name", String(255), nullable=False),
    Column("file_path", String(255), nullable=True),
    Column("file_size", BigInteger, nullable=True),
    Column("file_hash", String(64), nullable=True),
    Column("provider_file_uuid", String(64), nullable=True),
    Column("fs_metadata", JSON, nullable=True),
    Column("mime_type", String(128), nullable=True),
    Column("status", Text, nullable=False),
    Column("execution_time", Float, nullable=True),
    Column("execution_error", Text, nullable=True),
    *_timestamps(),
    Index("wfe_status_created_idx", "status", "created_at"),
)

SOURCE_TABLES = {
    table.name: table
    for table in (
        organization,
        usage,
        page_usage,
        workflow,
        pipeline,
        api_deployment,
        workflow_execution,
        workflow_file_execution,
    )
}

# Indexes our reads want on a real Unstract database (`doctor` reports the missing ones and
# `generate-test-data` creates them). Change detection reads modified_at (created_at on the
# insert-only page_usage); recomputation reads created_at ranges.
RECOMMENDED_INDEXES: dict[str, list[tuple[str, ...]]] = {
    "usage": [("modified_at",), ("created_at",), ("execution_id",)],
    "page_usage": [("created_at",), ("run_id",)],
    "workflow_execution": [("modified_at",), ("created_at",)],
    "workflow_file_execution": [("modified_at",), ("created_at",), ("workflow_execution_id",)],
}
