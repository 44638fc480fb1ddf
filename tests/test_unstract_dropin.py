"""Issue 12, Unstract drop-in: error bodies carry `message`, recent-activity/ clamps `limit`
like Unstract, workflow-token-usage/ trims ranges over 30 days like Unstract."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from dashboard_metrics.exporter.api.params import ceil_hour
from tests.harness import Harness, utc
from tests.test_api_support import client, expected, link_usage, seed

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


# -- overview/ answers any valid range ---------------------------------------------------------

OLD_EVENTS = [
    utc(2024, 5, 10, 8, 15),
    utc(2024, 5, 31, 23, 40),
    utc(2025, 1, 20, 3, 5),
    utc(2025, 2, 28, 23, 30),
    utc(2025, 3, 1, 0, 10),
    utc(2025, 3, 20, 14, 0),
    utc(2026, 2, 10, 9, 45),
]


def _old_history(h: Harness) -> str:
    """seed()'s history plus events years back, beyond the daily and hourly retention."""
    org = seed(h, orgs=1, events=30)[0]
    for index, when in enumerate(OLD_EVENTS):
        kind = ("manual", "etl", "task", "api")[index % 4]
        execution = org.execution(when, kind=kind)
        file_id = org.file(execution, when, status="ERROR" if index % 3 else "COMPLETED")
        org.pages(file_id, when, 3 + index)
        link_usage(
            h, org.usage(when, cost=0.01 * (index + 1), tokens=100 + index), execution, file_id
        )
    h.aggregator.tick()
    return org.string_id


def _check_overview(
    h: Harness,
    org: str,
    body: dict[str, Any],
    lo: datetime,
    hi: datetime,
    tz: tzinfo = UTC,
    per_day: bool = True,
) -> None:
    days = expected(h, org, ceil_hour(lo), ceil_hour(hi), "day", tz)
    totals = {t["metric_name"]: t for t in body["totals"]}
    assert set(totals) == set(days), (sorted(totals), sorted(days))
    for name, buckets in days.items():
        assert math.isclose(
            totals[name]["total_value"], sum(v for v, _ in buckets.values()), abs_tol=1e-9
        ), name
        assert totals[name]["total_count"] == sum(n for _, n in buckets.values()), name
    trend = {d["date"]: d["metrics"] for d in body["daily_trend"]}
    # Whole months come from the monthly tier, one trend point on the 1st (as Unstract's
    # monthly source does): per month the trend sums to the oracle's; per day when the range
    # holds no whole month, or is local (hours only).
    by_month: dict[tuple[str, str], float] = defaultdict(float)
    for day, metrics in trend.items():
        for name, value in metrics.items():
            by_month[(day[:7], name)] += value
    want_month: dict[tuple[str, str], float] = defaultdict(float)
    for name, buckets in days.items():
        for day, (value, _count) in buckets.items():
            want_month[(day.date().isoformat()[:7], name)] += value
    assert set(by_month) >= set(want_month)
    for key, value in by_month.items():
        assert math.isclose(value, want_month.get(key, 0.0), abs_tol=1e-9), key
    if per_day:
        want = {d.date().isoformat() for b in days.values() for d in b}
        assert sorted(trend) == sorted(want)
        for name, buckets in days.items():
            for day, (value, _count) in buckets.items():
                assert math.isclose(trend[day.date().isoformat()][name], value, abs_tol=1e-9)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_overview_answers_any_valid_range_exactly(h: Harness) -> None:
    org = _old_history(h)
    ranges = [  # (start, end, holds no whole UTC month)
        ("2024-03-01T10:17:00.000Z", "2026-03-15T12:29:00.000Z", False),  # two years, to now
        ("2025-01-15T06:39:00.000Z", "2025-02-14T06:39:00.000Z", True),  # 30 days, old
        ("2025-02-20T00:00:00.000Z", "2025-04-02T13:00:00.000Z", False),  # the daily edge
        ("2024-05-01T00:00:00.000Z", "2024-06-01T00:00:00.000Z", False),  # one whole month
        ("2024-05-10T08:00:00.000Z", "2024-05-10T09:00:00.000Z", True),  # one old hour
        ("2025-02-27T22:00:00.000Z", "2025-03-01T02:00:00.000Z", True),  # old month edge
        ("2026-01-05T00:00:00.000Z", "2026-01-31T12:29:00.000Z", True),  # beyond hourly
    ]
    async with client(h) as c:
        for start, end, per_day in ranges:
            response = await c.get(
                BASE.format(org=org) + "overview/", params={"start_date": start, "end_date": end}
            )
            body = await response.json()
            assert response.status == 200, (start, end, body)
            _check_overview(h, org, body, _instant(start), _instant(end), per_day=per_day)
        berlin = ZoneInfo("Europe/Berlin")
        query = {"start_date": "2025-01-15", "end_date": "2025-03-02", "tz": "Europe/Berlin"}
        body = await (await c.get(BASE.format(org=org) + "overview/", params=query)).json()
        lo = datetime(2025, 1, 15, tzinfo=berlin).astimezone(UTC)
        hi = datetime(2025, 3, 2, tzinfo=berlin).astimezone(UTC)
        _check_overview(h, org, body, lo, hi, berlin)
        # Still a 400 for what is not a valid range.
        bad = {"start_date": "2026-03-16T00:00:00.000Z"}
        response = await c.get(BASE.format(org=org) + "overview/", params=bad)
        assert (
            response.status == 400 and (await response.json())["errors"][0]["attr"] == "start_date"
        )
