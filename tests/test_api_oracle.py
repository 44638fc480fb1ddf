"""Every rollup and live endpoint against the oracle: each tier, granularity, filter and zone,
with partial first/last hours, days and months."""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from dashboard_metrics.exporter.api.params import ceil_hour
from dashboard_metrics.exporter.api.shape import bucket_start
from tests.harness import Harness, utc
from tests.test_api_support import client, expected, metric_type, seed

NOW = utc(2026, 3, 15, 12, 30)
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
PERIOD = {"hourly": "hour", "daily": "day", "monthly": "month", "live": "hour"}

# (query, tier the response must report, UTC bounds the hours are selected from)
RANGES: list[tuple[dict[str, str], str, datetime, datetime]] = [
    ({"start_date": "2026-03-10T05:20:00Z"}, "hourly", utc(2026, 3, 10, 5, 20), NOW),
    (
        {"start_date": "2026-02-20T07:00:00+00:00", "end_date": "2026-03-14T15:10:00Z"},
        "daily",
        utc(2026, 2, 20, 7),
        utc(2026, 3, 14, 15, 10),
    ),
    (
        {"start_date": "2026-01-31", "source": "monthly"},
        "monthly",
        utc(2026, 1, 31),
        NOW,
    ),
    ({"start_date": "2025-12-01T00:00:00"}, "monthly", utc(2025, 12, 1), NOW),
    (
        {
            "start_date": "2026-02-14T22:00:00Z",
            "end_date": "2026-03-02T01:00:00Z",
            "source": "hourly",
        },
        "hourly",
        utc(2026, 2, 14, 22),
        utc(2026, 3, 2, 1),
    ),
    ({}, "daily", utc(2026, 2, 13, 12, 30), NOW),
]


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def check_summary(
    body: dict[str, Any],
    h: Harness,
    org: str,
    lo: datetime,
    hi: datetime,
    source: str,
    tz: tzinfo = UTC,
    metric: str | None = None,
) -> None:
    lo, hi = ceil_hour(lo), ceil_hour(hi)
    per_period = expected(h, org, lo, hi, PERIOD[source], tz, metric)
    assert [e["metric_name"] for e in body["summary"]] == sorted(per_period)
    for entry in body["summary"]:
        cells = per_period[entry["metric_name"]]
        total = sum(v for v, _ in cells.values())
        count = sum(n for _, n in cells.values())
        assert entry["metric_type"] == metric_type(entry["metric_name"])
        assert close(entry["total_value"], total) and entry["total_count"] == count, entry
        assert close(entry["average_value"], total / count)
        assert close(entry["min_value"], min(v for v, _ in cells.values()))
        assert close(entry["max_value"], max(v for v, _ in cells.values()))


def check_series(
    series: list[dict[str, Any]],
    h: Harness,
    org: str,
    lo: datetime,
    hi: datetime,
    granularity: str,
    tz: tzinfo = UTC,
    metric: str | None = None,
    counts: bool = True,
) -> None:
    want = expected(h, org, ceil_hour(lo), ceil_hour(hi), granularity, tz, metric)
    assert [s["metric_name"] for s in series] == sorted(want)
    for entry in series:
        buckets = want[entry["metric_name"]]
        got = {datetime.fromisoformat(p["timestamp"]): p for p in entry["data"]}
        assert set(got) == set(buckets), entry["metric_name"]
        for when, (value, count) in buckets.items():
            assert close(got[when]["value"], value)
            assert got[when]["timestamp"] == when.isoformat()
            if counts:
                assert got[when]["count"] == count
        assert close(entry["total_value"], sum(v for v, _ in buckets.values()))


def url(org: str, endpoint: str, query: dict[str, str]) -> str:
    return f"/api/v1/unstract/{org}/metrics/{endpoint}?{urlencode(query)}"


async def test_summary_and_series_match_the_oracle_on_every_tier(h: Harness) -> None:
    orgs = seed(h)
    org = orgs[0].string_id
    async with client(h) as c:
        for query, source, lo, hi in RANGES:
            response = await c.get(url(org, "summary/", query))
            body = await response.json()
            assert response.status == 200, body
            assert body["source"] == source, query
            check_summary(body, h, org, lo, hi, source)
            granularities = ["day", "week"] + (["hour"] if source == "hourly" else [])
            granularities += ["month"] if source == "monthly" else []
            if query.get("source") == "monthly":  # explicit: too coarse for days and weeks
                granularities = ["month"]
                bad = await c.get(url(org, "series/", {**query, "granularity": "day"}))
                assert bad.status == 400
            for granularity in granularities:
                response = await c.get(url(org, "series/", {**query, "granularity": granularity}))
                body = await response.json()
                assert response.status == 200, (query, granularity, body)
                assert body["granularity"] == granularity
                check_series(body["series"], h, org, lo, hi, granularity)


async def test_filters_and_the_other_organization(h: Harness) -> None:
    orgs = seed(h)
    async with client(h) as c:
        for org in (o.string_id for o in orgs):
            for query, source, lo, hi in (RANGES[0], RANGES[1], RANGES[3]):
                q = {**query, "metric_name": "llm_usage"}
                body = await (await c.get(url(org, "summary/", q))).json()
                check_summary(body, h, org, lo, hi, source, metric="llm_usage")
                body = await (await c.get(url(org, "series/", {**q, "project": "default"}))).json()
                check_series(body["series"], h, org, lo, hi, "day", metric="llm_usage")
                body = await (await c.get(url(org, "summary/", {**q, "tag": "x"}))).json()
                assert body["summary"] == []
        body = await (await c.get(url("org_unknown", "summary/", {}))).json()
        assert body["summary"] == []


async def test_time_zones_and_dst_days(h: Harness) -> None:
    orgs = seed(h)
    org = orgs[0].string_id
    cases = [
        (BERLIN, "2026-03-01T00:00:00", utc(2026, 2, 28, 23)),
        # 2026-03-08 has 23 hours in New York (DST starts).
        (NEW_YORK, "2026-03-05", utc(2026, 3, 5, 5)),
    ]
    async with client(h) as c:
        for tz, start, lo in cases:
            query = {"start_date": start, "tz": str(tz)}
            body = await (await c.get(url(org, "summary/", query))).json()
            assert body["source"] == "hourly"
            check_summary(body, h, org, lo, NOW, "hourly", tz)
            for granularity in ("hour", "day", "week"):
                q = {**query, "granularity": granularity}
                body = await (await c.get(url(org, "series/", q))).json()
                check_series(body["series"], h, org, lo, NOW, granularity, tz)
                body = await (await c.get(url(org, "live-series/", q))).json()
                check_series(body["series"], h, org, lo, NOW, granularity, tz, counts=False)
            body = await (await c.get(url(org, "overview/", query))).json()
            days = expected(h, org, lo, ceil_hour(NOW), "day", tz)
            trend = {d["date"]: d["metrics"] for d in body["daily_trend"]}
            for name, buckets in days.items():
                for day, (value, _count) in buckets.items():
                    assert close(trend[day.date().isoformat()][name], value)
        dst = bucket_start(utc(2026, 3, 8, 12), "day", NEW_YORK)
        assert dst.isoformat() == "2026-03-08T00:00:00-05:00"
        # Only the hourly tier can answer local days; half-hour zones are refused.
        for query in (
            {"tz": "Europe/Berlin", "source": "daily"},
            {"tz": "Asia/Kolkata", "start_date": "2026-03-14"},
            {"tz": "Europe/Berlin", "start_date": "2026-01-02"},
        ):
            response = await c.get(url(org, "summary/", query))
            assert response.status == 400, query


async def test_live_endpoints_match_the_oracle(h: Harness) -> None:
    orgs = seed(h)
    org = orgs[1].string_id
    async with client(h) as c:
        for query, _source, lo, hi in RANGES:
            body = await (await c.get(url(org, "live-summary/", query))).json()
            assert body["source"] == "live"
            check_summary(body, h, org, lo, hi, "live")
            for granularity in ("day", "week"):
                q = {**query, "granularity": granularity, "metric_name": "pages_processed"}
                body = await (await c.get(url(org, "live-series/", q))).json()
                check_series(
                    body["series"],
                    h,
                    org,
                    lo,
                    hi,
                    granularity,
                    metric="pages_processed",
                    counts=False,
                )


async def test_overview_matches_the_oracle(h: Harness) -> None:
    orgs = seed(h)
    org = orgs[0].string_id
    async with client(h) as c:
        for query, lo in (
            ({}, utc(2026, 3, 8, 12, 30)),
            ({"start_date": "2026-02-01"}, utc(2026, 2, 1)),
        ):
            body = await (await c.get(url(org, "overview/", query))).json()
            days = expected(h, org, ceil_hour(lo), ceil_hour(NOW), "day")
            totals = {t["metric_name"]: t for t in body["totals"]}
            assert set(totals) == set(days)
            for name, buckets in days.items():
                assert close(totals[name]["total_value"], sum(v for v, _ in buckets.values()))
                assert totals[name]["total_count"] == sum(n for _, n in buckets.values())
            trend = {d["date"]: d["metrics"] for d in body["daily_trend"]}
            assert sorted(trend) == sorted({d.date().isoformat() for b in days.values() for d in b})
            assert body["period"]["days"] == (NOW - lo).days
