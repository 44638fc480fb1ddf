"""A replay of the requests Unstract's metrics dashboard makes (useMetricsData.js,
MetricsDashboard.jsx, LLMUsageTable.jsx in its frontend), with the parameters formatted as dayjs
sends them (`dayjs().startOf("minute").subtract(N, "day").toISOString()`: local days, so a
range across a DST change is 721 or 719 hours), checking every field the frontend reads against
naive reads of the source rows (tests/oracle.py, and the source tables directly), on both
dialects."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dashboard_metrics.core import source_tables as st
from dashboard_metrics.exporter.api.params import ceil_hour
from tests.harness import FakeClock, Harness, utc
from tests.test_api_errors import rows
from tests.test_api_support import client, seed
from tests.test_unstract_dropin import BASE, _check_overview, _instant

# After both fall-backs of 2026 (Europe 25 October, North America 1 November) and Sydney's
# spring-forward (4 October).
NOW = utc(2026, 11, 3, 15, 7, 23)
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def iso(instant: datetime) -> str:
    """JavaScript's Date.prototype.toISOString()."""
    value = instant.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def local_days_before(instant: datetime, days: int, zone: ZoneInfo) -> datetime:
    """dayjs(instant).subtract(days, "day"): the same local wall time `days` days earlier."""
    wall = instant.astimezone(zone).replace(tzinfo=None) - timedelta(days=days)
    return wall.replace(tzinfo=zone).astimezone(UTC)


def requests_of(zone_name: str) -> dict[str, Any]:
    zone = ZoneInfo(zone_name)
    now = NOW.replace(second=0, microsecond=0)  # stableNow: startOf("minute")
    pickers = {days: (local_days_before(now, days, zone), now) for days in (7, 30, 90)}
    custom = (  # a custom range years back, local midnights as the range picker gives them
        datetime(2024, 2, 29, tzinfo=zone).astimezone(UTC),
        datetime(2025, 7, 1, 23, 59, 59, 999000, tzinfo=zone).astimezone(UTC),
    )
    return {"pickers": [*pickers.values(), custom], "chart": pickers[30]}


def test_dayjs_ranges_cross_dst_as_the_issue_says() -> None:
    new_york = requests_of("America/New_York")["chart"]
    assert new_york[1] - new_york[0] == timedelta(hours=721)
    berlin = requests_of("Europe/Berlin")["chart"]
    assert berlin[1] - berlin[0] == timedelta(hours=721)
    start, end = requests_of("Australia/Sydney")["pickers"][2]  # 90 days, across spring-forward
    assert end - start == timedelta(days=90, hours=-1)
    assert iso(NOW) == "2026-11-03T15:07:23.000Z"


def _naive_activity(h: Harness, org: Any, limit: int) -> list[dict[str, Any]]:
    executions = {r["id"]: r for r in rows(h, st.workflow_execution)}
    workflows = {r["id"]: r for r in rows(h, st.workflow)}
    files = [
        f
        for f in rows(h, st.workflow_file_execution)
        if workflows[executions[f["workflow_execution_id"]]["workflow_id"]]["organization_id"]
        == org.pk
    ]
    files.sort(key=lambda f: f["created_at"].timestamp(), reverse=True)
    etl = {
        p["id"]
        for p in rows(h, st.pipeline)
        if p["pipeline_type"] == "ETL" and p["organization_id"] == org.pk
    }
    api = {a["id"] for a in rows(h, st.api_deployment) if a["organization_id"] == org.pk}
    usage = rows(h, st.usage)
    out = []
    for f in files[:limit]:
        pipeline = executions[f["workflow_execution_id"]]["pipeline_id"]
        kind = "etl" if pipeline in etl else "api" if pipeline in api else "workflow"
        tokens = sum(u["total_tokens"] for u in usage if u["run_id"] == f["id"])
        out.append(
            {
                "id": f["id"],
                "execution_id": f["workflow_execution_id"],
                "type": kind,
                "file_name": f["file_name"],
                "status": f["status"],
                "created_at": f["created_at"].astimezone(UTC),
                "total_tokens": tokens,
            }
        )
    return out


def _check_activity(h: Harness, org: Any, body: dict[str, Any]) -> None:
    want = _naive_activity(h, org, 5)
    got = body["activity"]
    assert len(got) == len(want) == 5
    for item, expected in zip(got, want, strict=True):
        for name in ("id", "execution_id", "type", "file_name", "status", "total_tokens"):
            assert item[name] == expected[name], (name, item, expected)
        assert datetime.fromisoformat(item["created_at"]) == expected["created_at"]


def _deployments(h: Harness, org: Any, kind: str) -> dict[str, str]:
    if kind == "API":
        return {
            r["id"]: r["display_name"]
            for r in rows(h, st.api_deployment)
            if r["organization_id"] == org.pk
        }
    if kind == "WF":
        return {
            r["id"]: r["workflow_name"]
            for r in rows(h, st.workflow)
            if r["organization_id"] == org.pk
        }
    return {
        r["id"]: r["pipeline_name"]
        for r in rows(h, st.pipeline)
        if r["organization_id"] == org.pk and r["pipeline_type"] == kind
    }


def _check_usage(
    h: Harness, org: Any, kind: str, body: dict[str, Any], start: datetime, end: datetime
) -> None:
    truncated = end - start > timedelta(days=30)
    assert body["range_truncated"] is truncated
    lo = ceil_hour(end - timedelta(days=30) if truncated else start)
    hi = ceil_hour(end)
    names = _deployments(h, org, kind)
    usage = rows(h, st.usage)
    pages = rows(h, st.page_usage)
    files = rows(h, st.workflow_file_execution)
    want = {}
    for dep_id, name in names.items():
        runs = [
            e
            for e in rows(h, st.workflow_execution)
            if lo <= e["created_at"].astimezone(UTC) < hi
            and (
                (e["workflow_id"] == dep_id and e["pipeline_id"] is None)
                if kind == "WF"
                else e["pipeline_id"] == dep_id
            )
        ]
        if not runs:
            continue
        run_ids = {r["id"] for r in runs}
        calls = [
            u
            for u in usage
            if u["execution_id"] in run_ids
            and u["usage_type"] == "llm"
            and lo <= u["created_at"].astimezone(UTC) < hi
        ]
        file_ids = {f["id"] for f in files if f["workflow_execution_id"] in run_ids}
        want[dep_id] = {
            "deployment_name": name,
            "total_tokens": sum(u["total_tokens"] for u in calls),
            "call_count": len(calls),
            "execution_count": len(runs),
            "completed_executions": sum(r["status"] == "COMPLETED" for r in runs),
            "failed_executions": sum(r["status"] == "ERROR" for r in runs),
            "total_pages_processed": sum(
                p["pages_processed"] for p in pages if p["run_id"] in file_ids
            ),
            "total_cost": sum(u["cost_in_dollars"] for u in calls),
            "last_execution_at": max(r["created_at"].astimezone(UTC) for r in runs),
        }
    got = {d["deployment_id"]: d for d in body["deployments"]}
    assert set(got) == set(want), (kind, sorted(got), sorted(want))
    for dep_id, expected in want.items():
        entry = got[dep_id]
        for name, value in expected.items():
            if name == "total_cost":
                assert math.isclose(entry[name], round(value, 4), abs_tol=1e-9), (name, entry)
            elif name == "last_execution_at":
                assert datetime.fromisoformat(entry[name]) == value
            else:
                assert entry[name] == value, (name, entry, expected)


@pytest.mark.parametrize("zone_name", ZONES)
async def test_the_dashboards_requests_replayed(h: Harness, zone_name: str) -> None:
    orgs = seed(h, orgs=2, events=45)
    org = orgs[1]
    plan = requests_of(zone_name)
    base = BASE.format(org=org.string_id)
    async with client(h) as c:
        # overview/: the picker's range (default 30 days, presets, custom) and the chart's.
        for start, end in [*plan["pickers"], plan["chart"]]:
            query = {"start_date": iso(start), "end_date": iso(end)}
            response = await c.get(base + "overview/", params=query)
            body = await response.json()
            assert response.status == 200, (query, body)
            per_day = (end - start).days <= 90
            _check_overview(h, org.string_id, body, _instant(iso(start)), end, per_day=per_day)
        # recent-activity/?limit=5, exactly as the hook builds the URL.
        response = await c.get(base + "recent-activity/?limit=5")
        assert response.status == 200
        _check_activity(h, org, await response.json())
        # workflow-token-usage/ for every tab and picker range, and the reload's refresh=true.
        for start, end in plan["pickers"]:
            for kind in ("API", "ETL", "TASK", "WF"):
                query = {"start_date": iso(start), "end_date": iso(end), "deployment_type": kind}
                for extra in ({}, {"refresh": "true"}):
                    response = await c.get(
                        base + "workflow-token-usage/", params={**query, **extra}
                    )
                    body = await response.json()
                    assert response.status == 200, (query, body)
                    _check_usage(h, org, kind, body, start, end)
