"""Test harness: a source + rollup database on SQLite or PostgreSQL, a fake clock, and helpers
to write source rows and compare every tier with the oracle."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from dashboard_metrics.aggregator.backfill import Backfill, BackfillOptions
from dashboard_metrics.aggregator.engine import Aggregator
from dashboard_metrics.aggregator.testdata import create_source_tables
from dashboard_metrics.core import eventstore, migrate
from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import METRICS
from dashboard_metrics.core.db import rollup_engine, source_engine
from dashboard_metrics.core.schema import BREAKDOWN_TIERS, TIERS
from dashboard_metrics.core.settings import Settings
from tests import oracle


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class Harness:
    settings: Settings
    clock: FakeClock
    rollup: Engine = field(init=False)
    source: Engine = field(init=False)
    aggregator: Aggregator = field(init=False)
    # Accepted pushed events by (organization, id), as the oracle's events.
    pushed: dict[tuple[str, str], oracle.DimEvent] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.rollup = rollup_engine(self.settings)
        self.source = source_engine(self.settings)
        create_source_tables(self.source, self.settings.effective_source_schema)
        migrate.upgrade(self.rollup)
        self.aggregator = Aggregator(self.settings, self.rollup, self.source, clock=self.clock)
        self._next_org = 1

    @property
    def dialect(self) -> str:
        return self.rollup.dialect.name

    def dispose(self) -> None:
        self.rollup.dispose()
        self.source.dispose()

    # -- writing source rows ------------------------------------------------------------------
    def insert(self, table: Any, **row: Any) -> dict[str, Any]:
        with self.source.begin() as conn:
            conn.execute(insert(table).values(**row))
        return row

    def org(self, string_id: str | None = None) -> Org:
        pk = self._next_org
        self._next_org += 1
        string_id = string_id or f"org_{pk:04d}"
        now = self.clock()
        self.insert(
            st.organization,
            id=pk,
            name=string_id,
            display_name=string_id,
            organization_id=string_id,
            allowed_token_limit=-1,
            restrict_llm_adapter_creation=False,
            restrict_connector_creation=False,
            created_at=now,
            modified_at=now,
        )
        return Org(self, pk, string_id)

    # -- pushed events ------------------------------------------------------------------------
    def push(
        self,
        org: str,
        event_id: str,
        metric: str,
        value: float = 1.0,
        at: datetime | None = None,
        conn: Any = None,
        **labels: str,
    ) -> bool:
        """Store one event as the ingest endpoint does (first write of an id wins), on ``conn``
        when given (its transaction commits when the caller's does). True when it was new."""
        at = at or self.clock()
        dims = tuple(labels.get(dim, "") for dim in ("model", "workflow", "deployment"))
        event = (event_id, metric, float(value), at, *dims)
        if conn is None:
            with self.rollup.begin() as own:
                new = eventstore.store(own, org, [event], self.clock()) == 1
        else:
            new = eventstore.store(conn, org, [event], self.clock()) == 1
        if new:
            self.pushed[(org, event_id)] = (org, metric, at, float(value), dims)
        return new

    def backfill(self, **options: Any) -> Any:
        return Backfill(self.aggregator, BackfillOptions(**options)).run()

    # -- comparing ------------------------------------------------------------------------------
    def tier_rows(self, tier_name: str) -> dict[tuple[str, Any, str], tuple[float, int, Any]]:
        tier = TIERS[tier_name]
        table = tier.table
        with self.rollup.connect() as conn:
            rows = conn.execute(
                select(
                    table.c.organization_id,
                    tier.period,
                    table.c.metric_name,
                    table.c.metric_value,
                    table.c.metric_count,
                    table.c.buckets,
                    table.c.project,
                    table.c.tag,
                )
            )
            out = {}
            for org, period, name, value, count, buckets, project, tag in rows:
                assert (project, tag) == ("default", "")
                # Decoded apart from the production codec: a JSON list of per-bucket counts.
                stored = None if buckets is None else tuple(json.loads(buckets))
                out[(org, period, name)] = (value, count, stored)
            return out

    def breakdown_rows(self, tier_name: str) -> dict[tuple[Any, ...], tuple[float, int, Any]]:
        tier = BREAKDOWN_TIERS[tier_name]
        table = tier.table
        with self.rollup.connect() as conn:
            rows = conn.execute(
                select(
                    table.c.organization_id,
                    tier.period,
                    table.c.metric_name,
                    table.c.model,
                    table.c.workflow,
                    table.c.deployment,
                    table.c.metric_value,
                    table.c.metric_count,
                    table.c.buckets,
                )
            )
            return {
                tuple(row[:6]): (
                    row[6],
                    row[7],
                    None if row[8] is None else tuple(json.loads(row[8])),
                )
                for row in rows
            }

    def assert_matches_oracle(
        self,
        tiers: tuple[str, ...] = ("hourly", "daily", "monthly"),
        since: dict[str, Any] | None = None,
    ) -> None:
        """Every organization tier and every breakdown tier equal the oracle within retention,
        and each bucket's breakdown rows add up to its organization row."""
        dim_events = oracle.dimension_events(self.source) + list(self.pushed.values())
        events = [event[:4] for event in dim_events]
        now = self.clock()
        # The invariant holds within retention: older hours and days may be gone (or not yet).
        since = {
            "hourly": now - timedelta(days=self.settings.hourly_retention_days),
            "daily": (now - timedelta(days=self.settings.daily_retention_days)).date(),
            **(since or {}),
        }
        for tier in tiers:
            expected = oracle.rollup(events, tier)
            if since and tier in since:
                expected = {k: v for k, v in expected.items() if k[1] >= since[tier]}
            actual = self.tier_rows(tier)
            if since and tier in since:
                actual = {k: v for k, v in actual.items() if k[1] >= since[tier]}
            _assert_cells(tier, actual, expected)
            expected_by = oracle.breakdown_rollup(dim_events, tier)
            by = self.breakdown_rows(tier)
            if since and tier in since:
                expected_by = {k: v for k, v in expected_by.items() if k[1] >= since[tier]}
                by = {k: v for k, v in by.items() if k[1] >= since[tier]}
            _assert_cells(f"breakdown {tier}", by, expected_by)
            _assert_sums_to_organization(tier, by, actual)


def _assert_cells(
    tier: str, actual: dict[Any, tuple[float, int, Any]], expected: dict[Any, oracle.Sums]
) -> None:
    assert set(actual) == set(expected), (
        f"{tier}: missing {sorted(set(expected) - set(actual))[:5]} "
        f"extra {sorted(set(actual) - set(expected))[:5]}"
    )
    for key, cell in expected.items():
        value, count, buckets = actual[key]
        assert count == cell.count, (tier, key, count, cell.count)
        assert math.isclose(value, cell.value, rel_tol=1e-9, abs_tol=1e-9), (
            tier,
            key,
            value,
            cell.value,
        )
        assert buckets == (tuple(cell.buckets) if cell.buckets else None), (
            tier,
            key,
            buckets,
            cell.buckets,
        )


def _assert_sums_to_organization(
    tier: str,
    breakdown: dict[tuple[Any, ...], tuple[float, int, Any]],
    organization: dict[tuple[str, Any, str], tuple[float, int, Any]],
) -> None:
    """The breakdown rows of a bucket, added up over any dimension, are its organization row
    (counts and bucket counts exactly; values up to summation order)."""
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for key, (value, count, buckets) in breakdown.items():
        acc = sums.setdefault(key[:3], [0.0, 0, None])
        acc[0] += value
        acc[1] += count
        if buckets is not None:
            acc[2] = (
                buckets if acc[2] is None else tuple(map(sum, zip(acc[2], buckets, strict=True)))
            )
    carried = {key: row for key, row in organization.items() if METRICS[key[2]].dimensions}
    assert set(sums) == set(carried), (tier, sorted(set(sums) ^ set(carried))[:5])
    for key, (value, count, buckets) in carried.items():
        total = sums[key]
        assert (total[1], total[2]) == (count, buckets), (tier, key, total, count, buckets)
        assert math.isclose(total[0], value, rel_tol=1e-9, abs_tol=1e-9), (tier, key)


@dataclass
class Org:
    h: Harness
    pk: int
    string_id: str
    workflow_id: str = ""
    etl_id: str = ""
    task_id: str = ""
    api_id: str = ""

    def __post_init__(self) -> None:
        now = self.h.clock()
        self.workflow_id = new_id()
        self.h.insert(
            st.workflow,
            id=self.workflow_id,
            organization_id=self.pk,
            workflow_name=f"wf-{self.pk}",
            description="",
            is_active=True,
            status="",
            deployment_type="DEFAULT",
            shared_to_org=False,
            created_at=now,
            modified_at=now,
        )
        self.etl_id, self.task_id = new_id(), new_id()
        for pipeline_id, kind in ((self.etl_id, "ETL"), (self.task_id, "TASK")):
            self.h.insert(
                st.pipeline,
                id=pipeline_id,
                pipeline_name=f"{kind}-{self.pk}",
                workflow_id=self.workflow_id,
                active=True,
                scheduled=False,
                pipeline_type=kind,
                run_count=0,
                last_run_status="SUCCESS",
                shared_to_org=False,
                organization_id=self.pk,
                created_at=now,
                modified_at=now,
            )
        self.api_id = new_id()
        self.h.insert(
            st.api_deployment,
            id=self.api_id,
            display_name="api",
            description="",
            workflow_id=self.workflow_id,
            is_active=True,
            api_endpoint=f"/api/{self.api_id}",
            api_name=f"api-{self.pk}",
            shared_to_org=False,
            organization_id=self.pk,
            created_at=now,
            modified_at=now,
        )

    def execution(
        self,
        created: datetime,
        kind: str = "manual",
        status: str = "COMPLETED",
        modified: datetime | None = None,
    ) -> str:
        pipeline = {"manual": None, "etl": self.etl_id, "task": self.task_id, "api": self.api_id}[
            kind
        ]
        execution_id = new_id()
        self.h.insert(
            st.workflow_execution,
            id=execution_id,
            pipeline_id=pipeline,
            workflow_id=self.workflow_id,
            execution_mode="INSTANT",
            execution_method="DIRECT",
            execution_type="COMPLETE",
            execution_log_id="",
            status=status,
            result_acknowledged=False,
            total_files=1,
            error_message="",
            attempts=1,
            execution_time=1.0,
            created_at=created,
            modified_at=modified or self.h.clock(),
        )
        return execution_id

    def file(
        self,
        execution_id: str,
        created: datetime,
        status: str = "COMPLETED",
        modified: datetime | None = None,
    ) -> str:
        file_id = new_id()
        self.h.insert(
            st.workflow_file_execution,
            id=file_id,
            workflow_execution_id=execution_id,
            file_name="a.pdf",
            status=status,
            created_at=created,
            modified_at=modified or self.h.clock(),
        )
        return file_id

    def pages(self, run_id: str, created: datetime, pages: int) -> str:
        row_id = new_id()
        self.h.insert(
            st.page_usage,
            id=row_id,
            organization_id=self.string_id,
            file_name="a.pdf",
            file_type="application/pdf",
            run_id=run_id,
            pages_processed=pages,
            file_size=1000,
            created_at=created,
        )
        return row_id

    def usage(
        self,
        created: datetime,
        reason: str = "extraction",
        cost: float = 0.01,
        tokens: int = 1000,
        usage_type: str = "llm",
        modified: datetime | None = None,
        model: str = "m",
        execution_id: str | None = None,
        workflow_id: str | None = None,
    ) -> str:
        row_id = new_id()
        self.h.insert(
            st.usage,
            id=row_id,
            organization_id=self.pk,
            adapter_instance_id="a",
            usage_type=usage_type,
            llm_usage_reason=reason,
            model_name=model,
            workflow_id=workflow_id,
            execution_id=execution_id,
            embedding_tokens=0,
            prompt_tokens=tokens,
            completion_tokens=0,
            total_tokens=tokens,
            cost_in_dollars=cost,
            created_at=created,
            modified_at=modified or self.h.clock(),
        )
        return row_id


def new_id() -> str:
    return str(uuid.uuid4())


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
