"""Partial first/last days of long ranges the hourly tier no longer holds are computed from the
source tables, so arbitrary bounds stay exact (instead of a 400)."""

from __future__ import annotations

from urllib.parse import urlencode

from tests.harness import Harness, utc
from tests.test_api_oracle import check_series, check_summary
from tests.test_api_support import client, seed


async def test_edges_beyond_hourly_retention_are_exact(h: Harness) -> None:
    orgs = seed(h, events=90)
    org = orgs[0].string_id
    lo, hi = utc(2026, 1, 22, 14), utc(2026, 3, 15, 12, 30)  # 14:00, 52 days ago
    async with client(h) as c:
        for source in ("daily", "monthly"):
            query = {"start_date": lo.isoformat(), "end_date": hi.isoformat(), "source": source}
            response = await c.get(f"/api/v1/unstract/{org}/metrics/summary/?{urlencode(query)}")
            assert response.status == 200, await response.text()
            body = await response.json()
            assert body["source"] == source
            check_summary(body, h, org, lo, hi, source)
            granularity = {"daily": "day", "monthly": "month"}[source]
            series_query = urlencode({**query, "granularity": granularity})
            response = await c.get(f"/api/v1/unstract/{org}/metrics/series/?{series_query}")
            assert response.status == 200, await response.text()
            check_series((await response.json())["series"], h, org, lo, hi, granularity)


async def test_edges_honour_filters(h: Harness) -> None:
    orgs = seed(h, events=60)
    org = orgs[0].string_id
    lo, hi = utc(2026, 1, 25, 9), utc(2026, 2, 20, 17)
    async with client(h) as c:
        for extra in ({"metric_name": "llm_calls"}, {"project": "other"}):
            query = {"start_date": lo.isoformat(), "end_date": hi.isoformat(), **extra}
            response = await c.get(f"/api/v1/unstract/{org}/metrics/summary/?{urlencode(query)}")
            assert response.status == 200, await response.text()
            body = await response.json()
            if "project" in extra:
                assert body["summary"] == []
            else:
                check_summary(body, h, org, lo, hi, "daily", metric="llm_calls")
