"""The breakdown panels: built from the catalogue's dimensions, and on PostgreSQL the Usage
history's breakdown queries give the oracle's numbers with the source's names, in every tier.

(That every breakdown PromQL expression returns data from a real Prometheus scraping `serve`
with the dimension labels on, the same for one replica or two, is checked with every other
expression in tests/test_dashboards_live.py.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import Dimension, metric
from dashboard_metrics.dashboards import breakdowns, checks, generate, history_breakdowns
from dashboard_metrics.dashboards.promql import named, selected
from tests import oracle
from tests.harness import Harness, Org, new_id

SPANS = {"hourly": timedelta(days=3), "daily": timedelta(days=30), "monthly": timedelta(days=365)}


def load(name: str) -> dict[str, Any]:
    path = generate.__file__.rsplit("/", 1)[0] + f"/generated/{name}"
    with open(path) as file:
        return json.load(file)  # type: ignore[no-any-return]


def test_each_breakdown_metric_carries_its_dimension() -> None:
    with pytest.raises(ValueError, match="documents_processed not kept by model"):
        breakdowns.carried([metric("documents_processed")], Dimension.MODEL)
    with pytest.raises(ValueError, match="not kept by model"):
        history_breakdowns.series_sql(metric("prompt_executions"), Dimension.MODEL)


def test_the_prometheus_dashboards_hold_the_breakdowns() -> None:
    exprs = {
        q.panel: q.text
        for name in ("llm-cost.json", "usage-overview.json")
        for q in checks.queries(load(name))
    }
    assert "sum by (model)" in exprs["llm_usage by model"]
    assert "unstract_llm_call_cost_usd_sum" in exprs["llm_usage by model"]
    assert "unstract_llm_call_tokens_sum" in exprs["llm_tokens by model"]
    workflow = [q for q in checks.queries(load("usage-overview.json")) if q.panel == "By workflow"]
    assert len(workflow) == len(breakdowns.BY_WORKFLOW)
    for query in workflow:
        assert "group_left (workflow_name)" in query.text and "unstract_workflow_info" in query.text
        assert query.instant
    deployment = " ".join(
        q.text for q in checks.queries(load("usage-overview.json")) if "deployment" in q.panel
    )
    assert "group_left (deployment_name, deployment_type)" in deployment
    assert "unstract_deployed_api_requests_total" in deployment
    assert "unstract_etl_pipeline_executions_total" in deployment


def test_names_join_is_replica_safe_and_keeps_unnamed_series() -> None:
    expr = named("X", "workflow")
    assert "max without (instance, pod) (unstract_workflow_info" in expr
    assert "topk by (organization, workflow) (1," in expr
    assert expr.endswith("or on (organization, workflow) X")


def test_the_history_dashboard_holds_the_breakdowns() -> None:
    sqls = {q.panel: q.text for q in checks.queries(load("usage-history.json"))}
    for title in ("llm_usage by model", "llm_tokens by model", "By workflow", "By deployment"):
        assert "event_metrics_breakdown_hourly" in sqls[title]
        assert "event_metrics_breakdown_monthly" in sqls[title]
    assert "${source_schema}.workflow" in sqls["By workflow"]
    assert "${source_schema}.api_deployment" in sqls["By deployment"]


# -- on PostgreSQL, against the oracle -----------------------------------------------------------


def usage(org: Org, created: Any, model: str, execution: str | None, cost: float) -> None:
    """An LLM usage row with a model and, when given, its execution's workflow."""
    org.h.insert(
        st.usage,
        id=new_id(),
        organization_id=org.pk,
        workflow_id=org.workflow_id if execution else None,
        execution_id=execution,
        adapter_instance_id="a",
        usage_type="llm",
        llm_usage_reason="extraction",
        model_name=model,
        embedding_tokens=0,
        prompt_tokens=100,
        completion_tokens=0,
        total_tokens=100 + int(cost * 1000),
        cost_in_dollars=cost,
        created_at=created,
        modified_at=org.h.clock(),
    )


def fill(h: Harness) -> list[Org]:
    orgs = [h.org(), h.org()]
    now = h.clock()
    for i, org in enumerate(orgs):
        for hours in (2, 20, 40):
            when = now - timedelta(hours=hours + i)
            api = org.execution(when, kind="api")
            etl = org.execution(when, kind="etl")
            org.execution(when, kind="manual")
            org.pages(org.file(api, when), when, 3 + i)
            org.pages(org.file(etl, when, status="ERROR"), when, 2)
            usage(org, when, "gpt-4o", api, 0.02)
            usage(org, when, "claude", etl, 0.5 + i)
            usage(org, when, "claude", None, 0.01)  # no execution: no workflow, no deployment
    h.aggregator.tick()
    return orgs


def expected(h: Harness, org: str, dimension: str) -> dict[tuple[str, str], float]:
    """(dimension value, metric) -> summed value for one organization, from the oracle."""
    index = ("model", "workflow", "deployment").index(dimension)
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for event_org, name, _when, value, dims in oracle.dimension_events(h.source):
        if event_org == org and Dimension(dimension) in metric(name).dimensions:
            sums[(dims[index], name)] += value
    return dict(sums)


def run_sql(h: Harness, text: str, tier: str, org: str) -> list[tuple[Any, ...]]:
    end = h.clock().replace(microsecond=0)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    sql = checks.sql_for_test(text, (end - SPANS[tier]).strftime(iso), end.strftime(iso), org)
    with h.rollup.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql)]


def names(h: Harness) -> dict[str, tuple[str, ...]]:
    """Each workflow's and deployment's names, read from the source tables."""
    with h.source.connect() as conn:
        workflows = select(st.workflow.c.id, st.workflow.c.workflow_name)
        found: dict[str, tuple[str, ...]] = {str(i): (n,) for i, n in conn.execute(workflows)}
        apis = select(st.api_deployment.c.id, st.api_deployment.c.display_name)
        found |= {str(i): (n, "API") for i, n in conn.execute(apis)}
        p = st.pipeline
        pipes = select(p.c.id, p.c.pipeline_name, p.c.pipeline_type)
        found |= {str(i): (n, kind) for i, n, kind in conn.execute(pipes)}
    return found


@pytest.mark.parametrize("tier", sorted(SPANS))
def test_history_breakdowns_equal_the_oracle(pg_h: Harness, tier: str) -> None:
    h = pg_h
    orgs = fill(h)
    known = names(h)
    for org in (o.string_id for o in orgs):
        by_model = expected(h, org, "model")
        for m in breakdowns.BY_MODEL:
            rows = run_sql(h, history_breakdowns.series_sql(m, Dimension.MODEL), tier, org)
            got: dict[str, float] = defaultdict(float)
            for _time, model, value in rows:
                got[model] += value
            want = {k or "(none)": v for (k, name), v in by_model.items() if name == m.name}
            assert got == pytest.approx(want), (tier, m.name)
        for dimension, metrics in (
            (Dimension.WORKFLOW, breakdowns.BY_WORKFLOW),
            (Dimension.DEPLOYMENT, breakdowns.BY_DEPLOYMENT),
        ):
            sums = expected(h, org, dimension)
            rows = run_sql(h, history_breakdowns.table_sql(metrics, dimension), tier, org)
            width = len(history_breakdowns.NAME_COLUMNS[dimension])
            table = {row[0]: row[1 : 1 + width] for row in rows}
            values = {
                (row[0], m.name): row[1 + width + i] for row in rows for i, m in enumerate(metrics)
            }
            wanted = {k: v for k, v in sums.items() if k[1] in {m.name for m in metrics}}
            nonzero = {k: v for k, v in values.items() if v}
            assert nonzero == pytest.approx(wanted), (tier, dimension)
            for key, found in table.items():
                assert found == known.get(key, (None,) * width), (tier, key)
            assert any(key in known for key in table), (tier, dimension)


# -- how a labelled counter moves (promtool) -----------------------------------------------------


def test_new_labelled_series_count_from_zero_but_a_changed_label_set_does_not(
    tmp_path: Path,
) -> None:
    """Over the hour to 90m: workflow a (two replicas) moved 60; workflow b appeared at 60m with
    10 events beside it: all 10 moved. Organization p's series gained a workflow label at 60m
    (dimensions turned on): its all-time 100 did not move."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required: apt-get install prometheus"
    family = "unstract_documents_processed_total"
    expr = selected(family, "1h", by="organization, workflow", match="")
    scenario = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    *(
                        {
                            "series": f'{family}{{organization="o",workflow="a",instance="{r}"}}',
                            "values": "5+1x120",
                        }
                        for r in ("r1", "r2")
                    ),
                    {
                        "series": f'{family}{{organization="o",workflow="b",instance="r1"}}',
                        "values": "_x60 10+0x60",
                    },
                    {
                        "series": f'{family}{{organization="p",instance="r1"}}',
                        "values": "100+0x60",
                    },
                    {
                        "series": f'{family}{{organization="p",workflow="c",instance="r1"}}',
                        "values": "_x60 100+0x60",
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "90m",
                        "exp_samples": [
                            {"labels": '{organization="o",workflow="a"}', "value": 60},
                            {"labels": '{organization="o",workflow="b"}', "value": 10},
                            {"labels": '{organization="p",workflow="c"}', "value": 0},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "moved_test.yml"
    path.write_text(yaml.safe_dump(scenario))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
