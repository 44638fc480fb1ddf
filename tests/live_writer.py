"""A source writer process for the live test: inserts and updates rows on the wall clock as an
application does, including transactions that stay open for seconds (they commit behind the
aggregator's watermark, inside its overlap), pipelines switching type and workflows moving
between organizations.

    python -m tests.live_writer DATABASE_URL SECONDS SEED FIRST_ORG_PK
"""

from __future__ import annotations

import random
import sys
import time
from datetime import datetime, timedelta

from sqlalchemy import Table, select, update

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import utcnow
from tests.harness import FakeClock, Harness, Org, new_id


class WallClock(FakeClock):
    """The harness's row helpers on real time."""

    def __init__(self) -> None:
        super().__init__(utcnow())

    def __call__(self) -> datetime:
        return utcnow()


def main(url: str, seconds: float, seed: int, first_org: int) -> None:
    rng = random.Random(seed)
    h = Harness(Settings(database_url=url), WallClock())
    h._next_org = first_org
    orgs: list[Org] = [h.org(f"live_{seed}_{i}") for i in range(2)]
    files: list[str] = []
    usages: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        org = rng.choice(orgs)
        created = utcnow() - timedelta(minutes=rng.randrange(50 * 60))
        op = rng.random()
        if op < 0.35:
            usages.append(org.usage(created, reason=rng.choice(["extraction", "challenge"])))
        elif op < 0.65:
            kind = rng.choice(["manual", "etl", "task", "api"])
            status = rng.choice(["COMPLETED", "ERROR", "EXECUTING"])
            file_id = org.file(org.execution(created, kind=kind), created, status=status)
            files.append(file_id)
            if rng.random() < 0.5:
                org.pages(file_id, created, rng.randrange(1, 20))
        elif op < 0.75 and files:
            _set(h, st.workflow_file_execution, rng.choice(files), status="COMPLETED")
        elif op < 0.85 and usages:
            _set(h, st.usage, rng.choice(usages), cost_in_dollars=rng.uniform(0, 2))
        elif op < 0.93:
            _long_transaction(h, org, created, rng.uniform(0.5, 3.0))
        elif op < 0.97:
            _flip_pipeline(h, org)
        else:
            target = rng.choice(orgs)
            _set(h, st.workflow, org.workflow_id, organization_id=target.pk)
        time.sleep(rng.uniform(0.0, 0.02))
    h.dispose()


def _set(h: Harness, table: Table, row_id: str, **values: object) -> None:
    with h.source.begin() as conn:
        statement = update(table).where(table.c.id == row_id)
        conn.execute(statement.values(**values, modified_at=utcnow()))


def _long_transaction(h: Harness, org: Org, created: datetime, hold: float) -> None:
    """Stamped when it starts, committed ``hold`` seconds later."""
    with h.source.begin() as conn:
        conn.execute(
            st.usage.insert().values(
                id=new_id(),
                organization_id=org.pk,
                adapter_instance_id="a",
                usage_type="llm",
                llm_usage_reason="extraction",
                model_name="m",
                embedding_tokens=0,
                prompt_tokens=10,
                completion_tokens=0,
                total_tokens=10,
                cost_in_dollars=0.5,
                created_at=created,
                modified_at=utcnow(),
            )
        )
        time.sleep(hold)


def _flip_pipeline(h: Harness, org: Org) -> None:
    pipeline = st.pipeline
    with h.source.begin() as conn:
        kind = conn.execute(
            select(pipeline.c.pipeline_type).where(pipeline.c.id == org.task_id)
        ).scalar_one()
        conn.execute(
            update(pipeline)
            .where(pipeline.c.id == org.task_id)
            .values(pipeline_type="ETL" if kind == "TASK" else "TASK", modified_at=utcnow())
        )


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
