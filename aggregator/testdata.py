"""`generate-test-data`: Unstract-shaped source rows, deterministic for a seed.

Unlike Unstract's generator, page_usage rows carry the organization's string id and their
file execution's id as run_id, so every metric sees them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Index, Table, delete, func, insert, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from dashboard_metrics.aggregator.progress import Progress
from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.timeutil import DAY, as_utc_or_none, day_start

REASONS = (("extraction", 60), ("challenge", 15), ("summarize", 10), ("lookup", 15))
MODELS = ("azure/gpt-4o", "azure/gpt-4o-mini", "anthropic/claude-sonnet", "openai/gpt-4.1")
FILES = ("invoice.pdf", "contract.pdf", "receipt.png", "statement.pdf", "form.docx", "id.jpg")
BATCH = 5000


@dataclass
class GenerateOptions:
    organization_id: str | None = None
    orgs: int = 3
    days: int = 7
    records_per_day: int = 15  # workflow executions per organization per day
    clean: bool = False
    seed: int = 42
    until: datetime | None = None


@dataclass
class GenerateReport:
    organizations: list[str]
    rows: dict[str, int]
    # The event times the run wrote or deleted rows in: their modified_at values lie in the
    # past, so the aggregator is told to recompute this range (state.request_recompute).
    start: datetime
    end: datetime


def create_source_tables(engine: Engine, schema: str | None) -> None:
    """Create the Unstract tables (and the indexes `doctor` recommends) where they are absent."""
    with engine.begin() as conn:
        if schema and conn.dialect.name == "postgresql":
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        st.source_metadata.create_all(conn, checkfirst=True)
        inspector = inspect(conn)
        for table_name, indexes in st.RECOMMENDED_INDEXES.items():
            table = st.SOURCE_TABLES[table_name]
            present = [
                tuple(ix["column_names"]) for ix in inspector.get_indexes(table_name, schema=schema)
            ]
            for columns in indexes:
                if any(ix[: len(columns)] == columns for ix in present):
                    continue
                name = f"dm_{table_name}_{'_'.join(columns)}_idx"
                Index(name, *(table.c[c] for c in columns)).create(conn)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class Rows:
    """Buffers rows per table and flushes them in bulk (COPY on PostgreSQL)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.counts: dict[str, int] = {}

    def add(self, table: Table, **row: Any) -> None:
        self.pending.setdefault(table.name, []).append(row)
        if len(self.pending[table.name]) >= BATCH:
            self.flush()

    def flush(self) -> None:
        # Parents first so foreign keys hold.
        for name in (
            "organization",
            "workflow",
            "pipeline",
            "api_deployment",
            "workflow_execution",
            "workflow_file_execution",
            "usage",
            "page_usage",
        ):
            rows = self.pending.pop(name, [])
            if rows:
                write_rows(self.conn, st.SOURCE_TABLES[name], rows)
                self.counts[name] = self.counts.get(name, 0) + len(rows)


def write_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    schema = conn.get_execution_options().get("schema_translate_map", {}).get(st.SOURCE_SCHEMA)
    target = f'"{schema}"."{table.name}"' if schema else f'"{table.name}"'
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    column_list = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f"COPY {target} ({column_list}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _weighted(rng: random.Random, choices: Iterable[tuple[str, int]]) -> str:
    items = list(choices)
    return rng.choices([c for c, _ in items], weights=[w for _, w in items])[0]


class Generator:
    def __init__(self, conn: Connection, options: GenerateOptions, now: datetime) -> None:
        self.conn = conn
        self.options = options
        self.until = options.until or now
        self.rng = random.Random(options.seed)
        self.rows = Rows(conn)

    def _org_ids(self) -> list[str]:
        if self.options.organization_id:
            return [self.options.organization_id]
        return [f"org_{self.rng.getrandbits(40):010x}" for _ in range(self.options.orgs)]

    def _ensure_org(self, string_id: str, stamp: datetime) -> int:
        org = st.organization
        existing = self.conn.execute(
            select(org.c.id).where(org.c.organization_id == string_id)
        ).scalar_one_or_none()
        if existing is not None:
            return int(existing)
        next_id = (
            int(self.conn.execute(select(func.coalesce(func.max(org.c.id), 0))).scalar_one()) + 1
        )
        self.conn.execute(
            insert(org).values(
                id=next_id,
                name=string_id,
                display_name=string_id.upper(),
                organization_id=string_id,
                allowed_token_limit=-1,
                restrict_llm_adapter_creation=False,
                restrict_connector_creation=False,
                created_at=stamp,
                modified_at=stamp,
            )
        )
        return next_id

    def clean(self, string_ids: list[str]) -> datetime | None:
        """Delete the source rows of these organizations (the organizations themselves stay);
        returns the earliest event time deleted."""
        org = st.organization
        pks = select(org.c.id).where(org.c.organization_id.in_(string_ids)).scalar_subquery()
        workflows = select(st.workflow.c.id).where(st.workflow.c.organization_id.in_(pks))
        executions = select(st.workflow_execution.c.id).where(
            st.workflow_execution.c.workflow_id.in_(workflows)
        )
        earliest = [
            self.conn.execute(select(func.min(table.c.created_at)).where(condition)).scalar()
            for table, condition in (
                (st.usage, st.usage.c.organization_id.in_(pks)),
                (st.page_usage, st.page_usage.c.organization_id.in_(string_ids)),
                (st.workflow_execution, st.workflow_execution.c.workflow_id.in_(workflows)),
            )
        ]
        self.conn.execute(delete(st.usage).where(st.usage.c.organization_id.in_(pks)))
        self.conn.execute(
            delete(st.page_usage).where(st.page_usage.c.organization_id.in_(string_ids))
        )
        self.conn.execute(
            delete(st.workflow_file_execution).where(
                st.workflow_file_execution.c.workflow_execution_id.in_(executions)
            )
        )
        self.conn.execute(
            delete(st.workflow_execution).where(st.workflow_execution.c.workflow_id.in_(workflows))
        )
        for table in (st.api_deployment, st.pipeline):
            self.conn.execute(delete(table).where(table.c.organization_id.in_(pks)))
        self.conn.execute(delete(st.workflow).where(st.workflow.c.organization_id.in_(pks)))
        return min(filter(None, map(as_utc_or_none, earliest)), default=None)

    def run(self, progress: Progress | None = None) -> GenerateReport:
        string_ids = self._org_ids()
        stamp = self.until
        first_day = (self.until - timedelta(days=self.options.days - 1)).date()
        start = day_start(first_day)
        if self.options.clean:
            start = min(filter(None, (self.clean(string_ids), start)))
        setups = [self._setup_org(s, self._ensure_org(s, stamp), stamp) for s in string_ids]
        day = first_day
        while day <= self.until.date():
            for setup in setups:
                for _ in range(self.options.records_per_day):
                    self._execution(setup, day)
            if progress:
                progress(1, day.isoformat())
            day += DAY
        self.rows.flush()
        end = day_start(self.until.date() + DAY)
        return GenerateReport(string_ids, dict(self.rows.counts), start, end)

    def _setup_org(self, string_id: str, pk: int, stamp: datetime) -> dict[str, Any]:
        rng = self.rng
        workflows = []
        for index in range(2):
            workflow_id = _uuid(rng)
            workflows.append(workflow_id)
            self.rows.add(
                st.workflow,
                id=workflow_id,
                organization_id=pk,
                workflow_name=f"{string_id}-workflow-{index}",
                description="",
                is_active=True,
                status="",
                deployment_type="DEFAULT",
                shared_to_org=False,
                created_at=stamp,
                modified_at=stamp,
            )
        pipelines = {}
        for kind in ("ETL", "TASK"):
            pipeline_id = _uuid(rng)
            pipelines[kind] = pipeline_id
            self.rows.add(
                st.pipeline,
                id=pipeline_id,
                pipeline_name=f"{kind.lower()}-{pk}",
                workflow_id=workflows[0],
                active=True,
                scheduled=False,
                pipeline_type=kind,
                run_count=0,
                last_run_status="SUCCESS",
                shared_to_org=False,
                organization_id=pk,
                created_at=stamp,
                modified_at=stamp,
            )
        api_id = _uuid(rng)
        self.rows.add(
            st.api_deployment,
            id=api_id,
            display_name=f"api {pk}",
            description="",
            workflow_id=workflows[1],
            is_active=True,
            api_endpoint=f"/deploy/{api_id}",
            api_name=f"api-{pk}",
            shared_to_org=False,
            organization_id=pk,
            created_at=stamp,
            modified_at=stamp,
        )
        return {
            "string_id": string_id,
            "pk": pk,
            "workflows": workflows,
            "pipelines": pipelines,
            "api": api_id,
        }

    def _moment(self, day: date) -> datetime:
        start = day_start(day)
        span = min(DAY, self.until - start)
        return start + timedelta(
            microseconds=self.rng.randrange(max(int(span / timedelta(microseconds=1)), 1))
        )

    def _execution(self, setup: dict[str, Any], day: date) -> None:
        rng = self.rng
        created = self._moment(day)
        kind = _weighted(rng, (("api", 35), ("etl", 25), ("task", 15), ("manual", 25)))
        pipeline_id = {
            "api": setup["api"],
            "etl": setup["pipelines"]["ETL"],
            "task": setup["pipelines"]["TASK"],
            "manual": None,
        }[kind]
        workflow_id = setup["workflows"][1 if kind == "api" else 0]
        execution_id = _uuid(rng)
        files = rng.randint(1, 3)
        status = _weighted(rng, (("COMPLETED", 85), ("ERROR", 10), ("EXECUTING", 5)))
        self.rows.add(
            st.workflow_execution,
            id=execution_id,
            pipeline_id=pipeline_id,
            workflow_id=workflow_id,
            execution_mode=rng.choice(("INSTANT", "QUEUE")),
            execution_method=rng.choice(("DIRECT", "SCHEDULED")),
            execution_type="COMPLETE",
            execution_log_id="",
            status=status,
            result_acknowledged=False,
            total_files=files,
            error_message="",
            attempts=1,
            execution_time=rng.uniform(5, 120),
            created_at=created,
            modified_at=created,
        )
        for _ in range(files):
            self._file(setup, execution_id, created)

    def _file(self, setup: dict[str, Any], execution_id: str, created: datetime) -> None:
        rng = self.rng
        file_id = _uuid(rng)
        status = _weighted(rng, (("COMPLETED", 85), ("ERROR", 10), ("EXECUTING", 5)))
        # Some files finish long after they were created (late status changes).
        late = rng.random() < 0.1
        modified = (
            min(created + timedelta(hours=rng.uniform(1, 72)), self.until) if late else created
        )
        name = rng.choice(FILES)
        self.rows.add(
            st.workflow_file_execution,
            id=file_id,
            workflow_execution_id=execution_id,
            file_name=name,
            file_path=f"/in/{file_id}/{name}",
            file_size=rng.randint(10_000, 5_000_000),
            file_hash=f"{rng.getrandbits(64):016x}",
            mime_type="application/pdf",
            status=status,
            execution_time=rng.uniform(1, 60),
            created_at=created,
            modified_at=modified,
        )
        if status == "COMPLETED" or (status == "ERROR" and rng.random() < 0.5):
            self.rows.add(
                st.page_usage,
                id=_uuid(rng),
                organization_id=setup["string_id"],
                file_name=name,
                file_type="application/pdf",
                run_id=file_id,
                pages_processed=rng.randint(1, 50),
                file_size=rng.randint(10_000, 5_000_000),
                created_at=created,
            )
        for _ in range(rng.randint(1, 4)):
            self._usage(setup, execution_id, file_id, created, "llm")
        self._usage(setup, execution_id, file_id, created, "embedding")

    def _usage(
        self,
        setup: dict[str, Any],
        execution_id: str,
        file_id: str,
        created: datetime,
        usage_type: str,
    ) -> None:
        rng = self.rng
        prompt = rng.randint(200, 6000)
        completion = rng.randint(50, 800) if usage_type == "llm" else 0
        embedding = rng.randint(100, 3000) if usage_type == "embedding" else 0
        self.rows.add(
            st.usage,
            id=_uuid(rng),
            organization_id=setup["pk"],
            workflow_id=setup["workflows"][0],
            execution_id=execution_id,
            adapter_instance_id="adapter-1",
            run_id=file_id,
            usage_type=usage_type,
            llm_usage_reason=_weighted(rng, REASONS) if usage_type == "llm" else "",
            model_name=rng.choice(MODELS),
            embedding_tokens=embedding,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion + embedding,
            cost_in_dollars=round(rng.uniform(0.00005, 0.08), 6),
            status="SUCCESS",
            created_at=created,
            modified_at=created,
        )


def generate(
    engine: Engine,
    schema: str | None,
    options: GenerateOptions,
    now: datetime,
    progress: Progress | None = None,
) -> GenerateReport:
    create_source_tables(engine, schema)
    with engine.begin() as conn:
        return Generator(conn, options, now).run(progress)
