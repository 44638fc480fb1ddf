"""The metric catalogue: the single source of truth for every metric.

Each entry declares where a metric's events come from and how they are measured. The rollup SQL
(`core/sourcesql.py`), the API's metric list, the `/metrics` families and the dashboards are
all derived from these entries; adding a metric is adding one entry here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class MetricType(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"


class OrgVia(StrEnum):
    """How a source row is tied to an organization's string id."""

    USAGE_ORG_PK = "usage.organization_id -> organization.id"
    PAGE_USAGE_STRING = "page_usage.organization_id is the string id"
    WORKFLOW = "workflow_execution.workflow_id -> workflow.organization_id"
    FILE_EXECUTION_WORKFLOW = (
        "workflow_file_execution -> workflow_execution -> workflow.organization_id"
    )
    API_DEPLOYMENT = "workflow_execution.pipeline_id = api_deployment.id -> its organization"
    ETL_PIPELINE = "workflow_execution.pipeline_id = pipeline.id (ETL) -> its organization"
    PUSHED = "pushed_events.organization_id (the organization the event was pushed to)"


class Dimension(StrEnum):
    """What a breakdown splits a metric by (the API's ``group_by`` names and /metrics labels)."""

    MODEL = "model"
    WORKFLOW = "workflow"
    DEPLOYMENT = "deployment"


DIMENSIONS: tuple[Dimension, ...] = tuple(Dimension)

# How each dimension resolves from a source table's row (core/sourcesql.py has the SQL). A
# metric may carry a dimension only where its table has a path here (tests/test_breakdowns.py
# checks), so adding one to a metric is one edit.
DIMENSION_PATHS: dict[tuple[str, Dimension], str] = {
    ("usage", Dimension.MODEL): "usage.model_name",
    ("usage", Dimension.WORKFLOW): "usage.workflow_id",
    ("usage", Dimension.DEPLOYMENT): "usage.execution_id -> workflow_execution.pipeline_id",
    ("workflow_execution", Dimension.WORKFLOW): "workflow_execution.workflow_id",
    ("workflow_execution", Dimension.DEPLOYMENT): "workflow_execution.pipeline_id",
    ("workflow_file_execution", Dimension.WORKFLOW): (
        "workflow_file_execution -> workflow_execution.workflow_id"
    ),
    ("workflow_file_execution", Dimension.DEPLOYMENT): (
        "workflow_file_execution -> workflow_execution.pipeline_id"
    ),
    ("page_usage", Dimension.WORKFLOW): (
        "page_usage.run_id -> workflow_file_execution -> workflow_execution.workflow_id"
    ),
    ("page_usage", Dimension.DEPLOYMENT): (
        "page_usage.run_id -> workflow_file_execution -> workflow_execution.pipeline_id"
    ),
}

# Value of one event: a column of the source row, or the pages recorded in page_usage for a
# file execution (page_usage.run_id = workflow_file_execution.id as text; 0 when none).
FILE_PAGES = "<page_usage pages of this file execution>"

# Pushed metrics (declared in DASHBOARD_METRICS_METRICS_FILE, core/pushed_metrics.py) come from
# the accepted events we keep in the rollup database, not from a source table.
PUSHED_TABLE = "pushed_events"


@dataclass(frozen=True)
class Metric:
    name: str
    type: MetricType
    table: str
    org_via: OrgVia
    prometheus_name: str
    help: str
    unit: str
    # Equality filters on the source table's columns, all of which must hold.
    where: tuple[tuple[str, str], ...] = ()
    # None: every event counts 1 (counters). Otherwise a column name or FILE_PAGES.
    value: str | None = None
    # Histogram upper bounds (inclusive), ascending; stored bucket counts have one more slot
    # for the +Inf bucket.
    buckets: tuple[float, ...] = ()
    time_column: str = "created_at"
    # The column that moves when a row changes; page_usage is insert-only.
    change_column: str = "modified_at"
    # Grafana unit id for panels.
    grafana_unit: str = "short"
    # The breakdowns this metric is kept by (DIMENSION_PATHS says how each resolves).
    dimensions: tuple[Dimension, ...] = ()

    @property
    def pushed(self) -> bool:
        """Pushed to the events endpoint rather than computed from a source table."""
        return self.table == PUSHED_TABLE

    @property
    def is_histogram(self) -> bool:
        return self.type is MetricType.HISTOGRAM

    @property
    def bucket_slots(self) -> int:
        return len(self.buckets) + 1 if self.is_histogram else 0


_LLM = (("usage_type", "llm"),)
_LLM_DIMENSIONS = (Dimension.MODEL, Dimension.WORKFLOW, Dimension.DEPLOYMENT)
_RUN_DIMENSIONS = (Dimension.WORKFLOW, Dimension.DEPLOYMENT)

PAGE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
FAILED_PAGE_BUCKETS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0)
COST_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
TOKEN_BUCKETS = (
    100.0,
    250.0,
    500.0,
    1000.0,
    2000.0,
    4000.0,
    8000.0,
    16000.0,
    32000.0,
    64000.0,
    128000.0,
)

BUILTIN: tuple[Metric, ...] = (
    Metric(
        name="documents_processed",
        type=MetricType.COUNTER,
        table="workflow_file_execution",
        org_via=OrgVia.FILE_EXECUTION_WORKFLOW,
        where=(("status", "COMPLETED"),),
        prometheus_name="documents_processed_total",
        help="Files whose workflow_file_execution is COMPLETED, by the file's creation hour",
        unit="documents",
        dimensions=_RUN_DIMENSIONS,
    ),
    Metric(
        name="pages_processed",
        type=MetricType.HISTOGRAM,
        table="page_usage",
        org_via=OrgVia.PAGE_USAGE_STRING,
        value="pages_processed",
        buckets=PAGE_BUCKETS,
        change_column="created_at",
        prometheus_name="document_pages",
        help="Pages per page_usage row (the sum is the pages processed)",
        unit="pages",
        dimensions=_RUN_DIMENSIONS,
    ),
    Metric(
        name="llm_calls",
        type=MetricType.COUNTER,
        table="usage",
        org_via=OrgVia.USAGE_ORG_PK,
        where=_LLM,
        prometheus_name="llm_calls_total",
        help="LLM calls: usage rows with usage_type 'llm' (every reason)",
        unit="calls",
        dimensions=_LLM_DIMENSIONS,
    ),
    Metric(
        name="challenges",
        type=MetricType.COUNTER,
        table="usage",
        org_via=OrgVia.USAGE_ORG_PK,
        where=(*_LLM, ("llm_usage_reason", "challenge")),
        prometheus_name="llm_challenges_total",
        help="LLM challenge calls: usage rows with usage_type 'llm' and reason 'challenge'",
        unit="calls",
        dimensions=_LLM_DIMENSIONS,
    ),
    Metric(
        name="summarization_calls",
        type=MetricType.COUNTER,
        table="usage",
        org_via=OrgVia.USAGE_ORG_PK,
        where=(*_LLM, ("llm_usage_reason", "summarize")),
        prometheus_name="llm_summarization_calls_total",
        help="LLM summarization calls: usage rows with usage_type 'llm' and reason 'summarize'",
        unit="calls",
        dimensions=_LLM_DIMENSIONS,
    ),
    Metric(
        name="deployed_api_requests",
        type=MetricType.COUNTER,
        table="workflow_execution",
        org_via=OrgVia.API_DEPLOYMENT,
        prometheus_name="deployed_api_requests_total",
        help="Workflow executions started through an API deployment (any status)",
        unit="requests",
        dimensions=_RUN_DIMENSIONS,
    ),
    Metric(
        name="etl_pipeline_executions",
        type=MetricType.COUNTER,
        table="workflow_execution",
        org_via=OrgVia.ETL_PIPELINE,
        prometheus_name="etl_pipeline_executions_total",
        help="Workflow executions of ETL pipelines (any status)",
        unit="executions",
        dimensions=_RUN_DIMENSIONS,
    ),
    Metric(
        name="llm_usage",
        type=MetricType.HISTOGRAM,
        table="usage",
        org_via=OrgVia.USAGE_ORG_PK,
        where=_LLM,
        value="cost_in_dollars",
        buckets=COST_BUCKETS,
        prometheus_name="llm_call_cost_usd",
        help="Cost in USD per LLM call (usage rows with usage_type 'llm'; the sum is the cost)",
        unit="USD",
        grafana_unit="currencyUSD",
        dimensions=_LLM_DIMENSIONS,
    ),
    Metric(
        name="prompt_executions",
        type=MetricType.COUNTER,
        table="workflow_execution",
        org_via=OrgVia.WORKFLOW,
        prometheus_name="prompt_executions_total",
        help="Every workflow execution of any type and status",
        unit="executions",
        dimensions=_RUN_DIMENSIONS,
    ),
    Metric(
        name="failed_pages",
        type=MetricType.HISTOGRAM,
        table="workflow_file_execution",
        org_via=OrgVia.FILE_EXECUTION_WORKFLOW,
        where=(("status", "ERROR"),),
        value=FILE_PAGES,
        buckets=FAILED_PAGE_BUCKETS,
        prometheus_name="failed_document_pages",
        help="Pages per failed file (workflow_file_execution ERROR; page_usage pages, 0 if none)",
        unit="pages",
        dimensions=_RUN_DIMENSIONS,
    ),
    Metric(
        name="llm_tokens",
        type=MetricType.HISTOGRAM,
        table="usage",
        org_via=OrgVia.USAGE_ORG_PK,
        where=_LLM,
        value="total_tokens",
        buckets=TOKEN_BUCKETS,
        prometheus_name="llm_call_tokens",
        help="Total tokens per LLM call (usage rows with usage_type 'llm'; the sum is the tokens)",
        unit="tokens",
        dimensions=_LLM_DIMENSIONS,
    ),
)

BUILTIN_NAMES: frozenset[str] = frozenset(entry.name for entry in BUILTIN)

# Every metric: the built-in ones, then the pushed ones of the metrics file. These three are
# updated in place by `install_pushed` (at start-up, before anything reads them), so every module
# that imported them sees the file's metrics.
CATALOGUE: list[Metric] = list(BUILTIN)
METRICS: dict[str, Metric] = {metric.name: metric for metric in CATALOGUE}
METRIC_NAMES: list[str] = sorted(METRICS)


def install_pushed(pushed: Sequence[Metric]) -> None:
    """Make ``pushed`` (validated by core/pushed_metrics.py) the catalogue's pushed metrics,
    replacing any installed before."""
    CATALOGUE[:] = [*BUILTIN, *pushed]
    METRICS.clear()
    METRICS.update((entry.name, entry) for entry in CATALOGUE)
    METRIC_NAMES[:] = sorted(METRICS)


def pushed_metrics() -> tuple[Metric, ...]:
    """The installed metrics of the metrics file."""
    return tuple(entry for entry in CATALOGUE if entry.pushed)


def metric(name: str) -> Metric:
    return METRICS[name]


def metric_groups() -> dict[tuple[str, OrgVia], list[Metric]]:
    """Metrics that share a source table and organization path: one query computes them all."""
    groups: dict[tuple[str, OrgVia], list[Metric]] = {}
    for entry in BUILTIN:
        groups.setdefault((entry.table, entry.org_via), []).append(entry)
    return groups


def carrying(dimension: Dimension) -> tuple[Metric, ...]:
    """The metrics kept by ``dimension``."""
    return tuple(entry for entry in CATALOGUE if dimension in entry.dimensions)


def change_columns() -> dict[str, str]:
    """Source table -> the column that reveals changed rows."""
    return {entry.table: entry.change_column for entry in BUILTIN}
