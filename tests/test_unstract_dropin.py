"""Issue 12, Unstract drop-in: error bodies carry `message`, recent-activity/ clamps `limit`
like Unstract, workflow-token-usage/ trims ranges over 30 days like Unstract."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.harness import Harness
from tests.test_api_support import client, seed

BASE = "/api/v1/unstract/{org}/metrics/"


async def test_every_error_body_has_a_human_message(h: Harness) -> None:
    org = seed(h, orgs=1, events=3)[0].string_id
    async with client(h, api_keys=f"k1={org}") as c:
        auth = {"Authorization": "Bearer k1"}
        cases: list[tuple[str, str, dict[str, str], int]] = [
            ("GET", BASE.format(org=org) + "summary/?granularity=x", auth, 400),
            ("GET", BASE.format(org=org) + "summary/", {}, 401),
            ("GET", BASE.format(org=org) + "summary/", {"Authorization": "Bearer no"}, 401),
            ("GET", BASE.format(org="org_other") + "summary/", auth, 403),
            ("GET", BASE.format(org=org) + "nothing-here/", auth, 404),
            ("POST", BASE.format(org=org) + "summary/", auth, 405),
        ]
        for method, url, headers, status in cases:
            response = await c.request(method, url, headers=headers)
            body = await response.json()
            assert response.status == status, (url, body)
            assert isinstance(body["message"], str) and body["message"], (url, body)
            assert body["message"] == body["errors"][0]["detail"]


async def test_recent_activity_clamps_limit_to_50_as_unstract_does(h: Harness) -> None:
    org = seed(h, orgs=1, events=60)[0].string_id
    async with client(h) as c:
        url = BASE.format(org=org) + "recent-activity/"
        fifty = await (await c.get(url, params={"limit": "50"})).json()
        assert len(fifty["activity"]) == 50 and fifty["limit"] == 50
        for raw in ("51", "500", "999999999999"):
            response = await c.get(url, params={"limit": raw})
            body = await response.json()
            assert response.status == 200, (raw, body)
            assert body == fifty, raw
        five = await (await c.get(url, params={"limit": "5"})).json()
        assert five["limit"] == 5 and five["activity"] == fifty["activity"][:5]


def _usage(body: dict[str, Any]) -> list[dict[str, Any]]:
    return body["deployments"]


async def test_token_usage_over_30_days_is_trimmed_to_30_days_before_the_end(h: Harness) -> None:
    org = seed(h, orgs=1, events=60)[0].string_id
    end = "2026-03-15T12:29:00.000Z"
    async with client(h) as c:
        url = BASE.format(org=org) + "workflow-token-usage/"
        for kind in ("API", "ETL", "TASK", "WF"):
            exact = {"start_date": "2026-02-13T12:29:00.000Z", "end_date": end}
            thirty = await (await c.get(url, params={**exact, "deployment_type": kind})).json()
            assert thirty["range_truncated"] is False
            for start in ("2025-12-15T12:29:00.000Z", "2026-02-13T12:28:59.999Z", "2020-01-01"):
                params = {"start_date": start, "end_date": end, "deployment_type": kind}
                response = await c.get(url, params=params)
                body = await response.json()
                assert response.status == 200, body
                assert body["range_truncated"] is True
                trimmed = datetime.fromisoformat(body["end_date"]) - timedelta(days=30)
                assert datetime.fromisoformat(body["start_date"]) == trimmed
                assert _usage(body) == _usage(thirty)
                assert body["deployment_type"] == kind
