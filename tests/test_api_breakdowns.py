"""group_by and the dimension filters of summary/, series/ and their live twins against the
oracle's dimension events (tests/oracle.py), with workflow and deployment names read from the
source rows here, on both dialects; the 400s; cache separation; the OpenAPI document."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import METRICS
from dashboard_metrics.exporter.api.context import API
from dashboard_metrics.exporter.api.dims import Breakdown
from dashboard_metrics.exporter.api.params import MetricFilter, ceil_hour, parse_range
from dashboard_metrics.exporter.openapi import document
from tests import oracle
from tests.harness import Harness, Org, new_id, utc
from tests.test_api_cache import RedisServer, redis_server  # noqa: F401 (fixture)
from tests.test_api_oracle import check_summary as check_org_summary
from tests.test_api_support import _local_bucket, client

NOW = utc(2026, 3, 15, 12, 30)
START = utc(2026, 2, 5)
PERIOD = {"hourly": "hour", "daily": "day", "monthly": "month", "live": "hour"}
DIMS = ("model", "workflow", "deployment")
GROUPINGS = [
    ["model"],
    ["workflow"],
    ["deployment"],
    ["model", "workflow"],
    ["model", "deployment"],
    ["workflow", "deployment"],
    ["deployment", "model"],
]
MODELS = ("gpt-4o", "claude-3", "mistral")
# (query, source it reports, lower bound of the hours selected)
RANGES = [
    ({"start_date": "2026-03-11T05:20:00Z"}, "hourly", utc(2026, 3, 11, 5, 20)),
    ({"start_date": "2026-02-14T07:00:00Z"}, "daily", utc(2026, 2, 14, 7)),
]


class World:
    """Org A's workflows, deployments and events (org B is noise and lends a foreign id)."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.a, self.b = h.org(), h.org()
        self.w1 = self.a.workflow_id
        self.w2 = self.workflow(self.a, "second workflow")
        self.api2 = self.api_deployment(self.a, display_name="", api_name="fallback-name")
        self.unknown_pipeline = new_id()  # an execution's pipeline found in no table
        self.foreign_workflow = self.b.workflow_id

    def workflow(self, org: Org, name: str) -> str:
        workflow_id = new_id()
        now = self.h.clock()
        self.h.insert(
            st.workflow,
            **dict(id=workflow_id, organization_id=org.pk, workflow_name=name, description=""),
            **dict(is_active=True, status="", deployment_type="DEFAULT", shared_to_org=False),
            created_at=now,
            modified_at=now,
        )
        return workflow_id

    def api_deployment(self, org: Org, display_name: str, api_name: str) -> str:
        deployment_id = new_id()
        now = self.h.clock()
        self.h.insert(
            st.api_deployment,
            **dict(id=deployment_id, display_name=display_name, description=""),
            **dict(workflow_id=org.workflow_id, is_active=True, api_name=api_name),
            api_endpoint=f"/api/{deployment_id}",
            shared_to_org=False,
            organization_id=org.pk,
            created_at=now,
            modified_at=now,
        )
        return deployment_id

    def execution(self, workflow_id: str, pipeline_id: str | None, when: datetime) -> str:
        execution_id = new_id()
        self.h.insert(
            st.workflow_execution,
            **dict(id=execution_id, pipeline_id=pipeline_id, workflow_id=workflow_id),
            **dict(execution_mode="INSTANT", execution_method="DIRECT", execution_type="COMPLETE"),
            **dict(execution_log_id="", status="COMPLETED", result_acknowledged=False),
            **dict(total_files=1, error_message="", attempts=1, execution_time=1.0),
            created_at=when,
            modified_at=self.h.clock(),
        )
        return execution_id

    def populate(self, events: int = 70, seed: int = 3) -> None:
        rng = random.Random(seed)
        a = self.a
        pipelines = [a.api_id, self.api2, a.etl_id, a.task_id, None, self.unknown_pipeline]
        span = (NOW - START).total_seconds()
        for index in range(events):
            if index % 3 == 0:
                when = NOW - timedelta(seconds=rng.uniform(0, 5 * 86400))
            else:
                when = START + timedelta(seconds=rng.uniform(0, span))
            workflow_id = rng.choice([self.w1, self.w2])
            execution = self.execution(workflow_id, rng.choice(pipelines), when)
            file_id = a.file(execution, when, status=rng.choice(["COMPLETED", "ERROR"]))
            if rng.random() < 0.8:
                a.pages(file_id, when, rng.randint(1, 30))
            usage_workflow = rng.choice([workflow_id, workflow_id, self.foreign_workflow])
            a.usage(
                when,
                reason=rng.choice(["extraction", "challenge", "summarize"]),
                cost=rng.uniform(0, 0.2),
                tokens=rng.randint(10, 9000),
                model=rng.choice(MODELS),
                workflow_id=usage_workflow,
                execution_id=execution,
            )
        recent = NOW - timedelta(hours=2)
        a.usage(recent, model="gpt-4o")  # no workflow, no execution: null dimensions
        a.pages(new_id(), recent, 3)  # pages of no file: no workflow, no deployment
        b_execution = self.b.execution(recent, kind="api")
        self.b.usage(recent, model="gpt-4o", workflow_id=self.b.workflow_id)
        self.b.file(b_execution, recent)
        self.h.aggregator.tick()
        self.events = oracle.dimension_events(self.h.source)
        self.names = self.read_names()

    def read_names(self) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        """Org A's workflow names and deployment (name, type), read from the source rows."""
        rows = {table: oracle._rows(self.h.source, table) for table in SOURCE_NAMES}
        workflows = {
            r["id"]: r["workflow_name"]
            for r in rows[st.workflow]
            if r["organization_id"] == self.a.pk
        }
        deployments = {
            r["id"]: (r["display_name"] or r["api_name"], "API")
            for r in rows[st.api_deployment]
            if r["organization_id"] == self.a.pk
        }
        deployments |= {
            r["id"]: (r["pipeline_name"], r["pipeline_type"])
            for r in rows[st.pipeline]
            if r["organization_id"] == self.a.pk
        }
        return workflows, deployments


SOURCE_NAMES = (st.workflow, st.api_deployment, st.pipeline)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def carries(metric: str, dims: set[str]) -> bool:
    return dims <= {d.value for d in METRICS[metric].dimensions}


def expected(
    world: World,
    lo: datetime,
    hi: datetime,
    granularity: str,
    group_by: list[str],
    filters: dict[str, str],
) -> dict[tuple[str, tuple[str, ...]], dict[datetime, list[float]]]:
    """(metric, group) -> bucket -> [value, events], from the oracle's dimension events."""
    asked = set(group_by) | set(filters)
    out: dict[tuple[str, tuple[str, ...]], dict[datetime, list[float]]] = defaultdict(
        lambda: defaultdict(lambda: [0.0, 0])
    )
    for org, name, when, value, dims in world.events:
        if org != world.a.string_id or not lo <= when < hi or not carries(name, asked):
            continue
        values = dict(zip(DIMS, dims, strict=True))
        if any(values[dim] != wanted for dim, wanted in filters.items()):
            continue
        group = tuple(values[dim] for dim in group_by)
        cell = out[(name, group)][_local_bucket(when, granularity, UTC)]
        cell[0] += value
        cell[1] += 1
    return out


def labels(world: World, group_by: list[str], group: tuple[str, ...]) -> dict[str, Any]:
    workflows, deployments = world.names
    out: dict[str, Any] = {}
    for dim, value in zip(group_by, group, strict=True):
        out[dim] = value or None
        if dim == "workflow":
            out["workflow_name"] = workflows.get(value)
        if dim == "deployment":
            name, kind = deployments.get(value, (None, None))
            out["deployment_name"], out["deployment_type"] = name, kind
    return out


def key_of(entry: dict[str, Any], group_by: list[str]) -> tuple[str, tuple[str, ...]]:
    return entry["metric_name"], tuple(entry[dim] or "" for dim in group_by)


def check_summary(
    body: dict[str, Any], world: World, lo: datetime, group_by: list[str], flt: dict[str, str]
) -> None:
    want = expected(world, ceil_hour(lo), ceil_hour(NOW), PERIOD[body["source"]], group_by, flt)
    got = {key_of(entry, group_by): entry for entry in body["summary"]}
    assert set(got) == set(want), (group_by, flt)
    assert [key_of(e, group_by) for e in body["summary"]] == sorted(want)
    for key, buckets in want.items():
        entry = got[key]
        total = sum(v for v, _ in buckets.values())
        count = sum(n for _, n in buckets.values())
        assert {k: entry[k] for k in entry if k in LABELS} == labels(world, group_by, key[1])
        assert close(entry["total_value"], total) and entry["total_count"] == count, entry
        assert close(entry["min_value"], min(v for v, _ in buckets.values()))
        assert close(entry["max_value"], max(v for v, _ in buckets.values()))
        assert close(entry["average_value"], total / count)


def check_series(
    series: list[dict[str, Any]],
    world: World,
    lo: datetime,
    group_by: list[str],
    flt: dict[str, str],
    live: bool = False,
) -> None:
    want = expected(world, ceil_hour(lo), ceil_hour(NOW), "day", group_by, flt)
    got = {key_of(entry, group_by): entry for entry in series}
    assert set(got) == set(want), (group_by, flt)
    for key, buckets in want.items():
        entry = got[key]
        assert {k: entry[k] for k in entry if k in LABELS} == labels(world, group_by, key[1])
        if not live:
            assert (entry["project"], entry["tag"]) == ("default", "")
        points = {datetime.fromisoformat(p["timestamp"]): p for p in entry["data"]}
        assert set(points) == set(buckets)
        for when, (value, count) in buckets.items():
            assert close(points[when]["value"], value)
            assert live or points[when]["count"] == count
        assert close(entry["total_value"], sum(v for v, _ in buckets.values()))


LABELS = ("model", "workflow", "workflow_name", "deployment", "deployment_name", "deployment_type")


def url(org: str, endpoint: str, query: dict[str, str]) -> str:
    return f"/api/v1/unstract/{org}/metrics/{endpoint}?{urlencode(query)}"


def filter_cases(world: World) -> list[dict[str, str]]:
    return [{}, {"model": "gpt-4o"}, {"workflow": world.w2}, {"deployment": world.a.api_id}]


@pytest.fixture
def world(h: Harness) -> World:
    made = World(h)
    made.populate()
    return made


async def test_the_matrix_matches_the_oracle(h: Harness, world: World) -> None:
    org = world.a.string_id
    async with client(h) as c:
        for query, source, lo in RANGES:
            for group_by in [*GROUPINGS, []]:
                for flt in filter_cases(world):
                    if not group_by and not flt:
                        continue
                    params = {**query, **flt} | (
                        {"group_by": ",".join(group_by)} if group_by else {}
                    )
                    response = await c.get(url(org, "summary/", params))
                    body = await response.json()
                    assert response.status == 200, body
                    assert body["source"] == source
                    check_summary(body, world, lo, group_by, flt)
                    response = await c.get(url(org, "series/", params))
                    body = await response.json()
                    assert response.status == 200, body
                    check_series(body["series"], world, lo, group_by, flt)


async def test_the_live_twins_match_the_oracle(h: Harness, world: World) -> None:
    org = world.a.string_id
    lo = NOW - timedelta(days=30)
    async with client(h) as c:
        for group_by in [*GROUPINGS, []]:
            for flt in filter_cases(world):
                if not group_by and not flt:
                    continue
                params = flt | ({"group_by": ",".join(group_by)} if group_by else {})
                response = await c.get(url(org, "live-summary/", params))
                body = await response.json()
                assert response.status == 200, body
                check_summary(body, world, lo, group_by, flt)
                response = await c.get(url(org, "live-series/", params))
                body = await response.json()
                assert response.status == 200, body
                check_series(body["series"], world, lo, group_by, flt, live=True)


async def test_names_nulls_and_metric_selection(h: Harness, world: World) -> None:
    """Spot checks the matrix implies, spelled out: every name kind, nulls, and which metrics
    answer a grouping."""
    org = world.a.string_id
    async with client(h) as c:
        response = await c.get(url(org, "summary/", {"group_by": "deployment"}))
        entries = (await response.json())["summary"]
        by_id = {(e["metric_name"], e["deployment"]): e for e in entries}
        api = by_id[("prompt_executions", world.a.api_id)]
        assert (api["deployment_name"], api["deployment_type"]) == ("api", "API")
        fallback = by_id[("prompt_executions", world.api2)]
        assert (fallback["deployment_name"], fallback["deployment_type"]) == (
            "fallback-name",
            "API",
        )
        etl = by_id[("etl_pipeline_executions", world.a.etl_id)]
        assert (etl["deployment_name"], etl["deployment_type"]) == (f"ETL-{world.a.pk}", "ETL")
        task = by_id[("prompt_executions", world.a.task_id)]
        assert task["deployment_type"] == "TASK"
        for deployment in (None, world.unknown_pipeline):
            entry = by_id[("prompt_executions", deployment)]
            assert (entry["deployment_name"], entry["deployment_type"]) == (None, None)
        response = await c.get(url(org, "summary/", {"group_by": "model"}))
        metrics = {e["metric_name"] for e in (await response.json())["summary"]}
        assert metrics == {m.name for m in METRICS.values() if "model" in m.dimensions}
        response = await c.get(url(org, "summary/", {"group_by": "workflow"}))
        entries = (await response.json())["summary"]
        foreign = [e for e in entries if e["workflow"] == world.foreign_workflow]
        assert foreign and all(e["workflow_name"] is None for e in foreign)  # org B's workflow
        assert any(e["workflow"] is None for e in entries)


@pytest.mark.parametrize(
    ("query", "attr", "detail"),
    [
        ({"group_by": "project"}, "group_by", "not a dimension"),
        ({"group_by": "model,workflow,deployment"}, "group_by", "At most 2"),
        ({"group_by": "model,model"}, "group_by", "twice"),
        ({"group_by": "model,"}, "group_by", "not a dimension"),
        ({"group_by": ""}, "group_by", "empty"),
        ({"model": ""}, "model", "empty"),
        ({"deployment": "x" * 256}, "deployment", "At most 255"),
        (
            {"group_by": "model", "metric_name": "pages_processed"},
            "group_by",
            "pages_processed has no dimension model",
        ),
        (
            {"model": "gpt-4o", "metric_name": "prompt_executions"},
            "model",
            "prompt_executions has no dimension model",
        ),
    ],
)
async def test_bad_breakdowns_are_400s_naming_the_parameter(
    h: Harness, query: dict[str, str], attr: str, detail: str
) -> None:
    org = h.org().string_id
    h.aggregator.tick()
    async with client(h) as c:
        for endpoint in ("summary/", "series/", "live-summary/", "live-series/"):
            response = await c.get(url(org, endpoint, query))
            body = await response.json()
            assert response.status == 400, (endpoint, body)
            assert body["errors"][0]["attr"] == attr
            assert detail in body["errors"][0]["detail"] and detail in body["message"]
        repeated = f"/api/v1/unstract/{org}/metrics/summary/?model=a&model=b"
        response = await c.get(repeated)
        assert response.status == 400 and (await response.json())["errors"][0]["attr"] == "model"
        for endpoint in ("", "overview/"):
            response = await c.get(url(org, endpoint, {"group_by": "model"}))
            assert response.status == 400  # only the four breakdown endpoints take it


async def _cached_matrix(h: Harness, world: World, **settings: Any) -> None:
    """Requests differing only in grouping or filters, each asked twice (the second a cache
    hit), interleaved with the organization level: every answer still the oracle's."""
    org = world.a.string_id
    query, _source, lo = RANGES[0]  # hourly: the hour buckets are cached too
    cases = [(g, f) for g in (["model"], ["workflow"], []) for f in ({}, {"model": "claude-3"})]
    async with client(h, **settings) as c:
        for _round in range(2):
            for group_by, flt in cases:
                params = {**query, **flt} | ({"group_by": ",".join(group_by)} if group_by else {})
                response = await c.get(url(org, "summary/", params))
                body = await response.json()
                if group_by or flt:
                    check_summary(body, world, lo, group_by, flt)
                else:
                    check_org_summary(body, h, org, lo, NOW, "hourly")


async def test_cache_separates_groupings_and_filters(h: Harness, world: World) -> None:
    await _cached_matrix(h, world)


async def test_cache_separates_groupings_and_filters_on_redis(
    h: Harness,
    world: World,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    await _cached_matrix(h, world, redis_url=redis_server.url)


def test_keys_differ_by_grouping_and_filter() -> None:
    from dashboard_metrics.core.catalogue import Dimension
    from dashboard_metrics.exporter.api.caching import _bucket_keys

    hours = [utc(2026, 3, 1, 5)]
    variants = [
        Breakdown(),
        Breakdown((Dimension.MODEL,)),
        Breakdown((Dimension.WORKFLOW,)),
        Breakdown((Dimension.MODEL, Dimension.WORKFLOW)),
        Breakdown((Dimension.WORKFLOW, Dimension.MODEL)),
        Breakdown((), ((Dimension.MODEL, "a"),)),
        Breakdown((), ((Dimension.WORKFLOW, "a"),)),
        Breakdown((Dimension.MODEL,), ((Dimension.MODEL, "a"),)),
    ]
    filters = [MetricFilter(None, None, None, variant) for variant in variants]
    assert len({_bucket_keys(1, "o", hours, f)[0] for f in filters}) == len(variants)
    assert len(set(filters)) == len(variants)  # the in-process body keys hold the filter


def test_openapi_documents_the_breakdowns() -> None:
    doc = document()
    for path in ("summary/", "series/", "live-summary/", "live-series/"):
        operation = doc["paths"][f"/api/v1/unstract/{{org_id}}/metrics/{path}"]["get"]
        params = {p["name"]: p for p in operation["parameters"]}
        assert params["group_by"]["schema"]["items"]["enum"] == list(DIMS)
        assert params["group_by"]["schema"]["maxItems"] == 2
        assert {"model", "workflow", "deployment"} <= set(params)
        assert "has no dimension" in operation["responses"]["400"]["description"]
    for schema in ("Summary", "Series", "LiveSeries"):
        item = doc["components"]["schemas"][schema]["properties"]
        item = item["summary" if schema == "Summary" else "series"]["items"]["properties"]
        assert set(LABELS) <= set(item)


async def test_edges_beyond_hourly_retention_keep_the_breakdown(h: Harness, world: World) -> None:
    """The first partial day lies before the hourly tier's 30 days: computed from the source's
    breakdown rows (rollups.read_live), grouped and filtered like the tiers."""
    org = world.a.string_id
    lo = utc(2026, 2, 10, 7)
    async with client(h) as c:
        plan = await c.app[API].plan(
            parse_range({"start_date": lo.isoformat()}, NOW, 30), "daily", None, NOW
        )
        assert plan.live, plan  # the edge is live indeed
        for group_by, flt in ((["model"], {}), (["deployment"], {"workflow": world.w2})):
            params = {"start_date": lo.isoformat(), "source": "daily", "group_by": group_by[0]}
            response = await c.get(url(org, "summary/", params | flt))
            body = await response.json()
            assert response.status == 200, body
            check_summary(body, world, lo, group_by, flt)
            response = await c.get(url(org, "series/", params | flt))
            check_series((await response.json())["series"], world, lo, group_by, flt)
