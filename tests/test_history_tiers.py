"""The Usage history dashboard picks the rollup tier exactly as the JSON API's auto source does.

The API (exporter/api/plan.py ``choose``) decides on the range's whole days; the dashboard
decides in PostgreSQL, in the range conditions of its UNION ALL branches. Both are evaluated
here over range lengths of 1 to 400 days, each a second and an hour either side of the day:
the dashboard's conditions by PostgreSQL itself, with Grafana's macros replaced by the quoted
ISO times Grafana sends.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from dashboard_metrics.core.catalogue import CATALOGUE
from dashboard_metrics.core.coverage import Coverage
from dashboard_metrics.dashboards.history import TIER_CONDITIONS, tiered_series_sql
from dashboard_metrics.exporter.api.params import DateRange
from dashboard_metrics.exporter.api.plan import choose
from tests.conftest import PG_ADMIN

# Every tier holds everything: the choice is the range's alone.
EVERYTHING = Coverage(hourly_from=datetime(2000, 1, 1, tzinfo=UTC), daily_from=date(2000, 1, 1))
STARTS = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 6, 14, 10, 30, 15, tzinfo=UTC))
EDGES = (
    timedelta(seconds=-1),
    timedelta(0),
    timedelta(seconds=1),
    timedelta(hours=1),
    timedelta(hours=23),
    timedelta(hours=23, minutes=59, seconds=59),
)
RANGES = [
    (start, start + timedelta(days=days) + edge)
    for start in STARTS
    for days in range(1, 401)
    for edge in EDGES
]


def api_tier(start: datetime, end: datetime) -> str:
    return choose(DateRange(start, end, UTC), "auto", None, EVERYTHING).source


def grafana_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def dashboard_tiers(ranges: list[tuple[datetime, datetime]]) -> list[list[str]]:
    """For each range, the tiers whose branch conditions PostgreSQL finds true."""
    columns = ["(" + " AND ".join(conditions) + ")" for conditions in TIER_CONDITIONS.values()]
    select = ", ".join(columns)
    select = select.replace("$__timeFrom()", "v.f").replace("$__timeTo()", "v.t")
    sql = (
        f"SELECT {select} FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS v(f, t, n) "
        "ORDER BY v.n"
    )
    try:
        conn = psycopg.connect(PG_ADMIN, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - PostgreSQL is part of the suite
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    with conn:
        rows = conn.execute(
            sql, ([grafana_time(s) for s, _ in ranges], [grafana_time(e) for _, e in ranges])
        ).fetchall()
    tiers = list(TIER_CONDITIONS)
    return [[tier for tier, holds in zip(tiers, row, strict=True) if holds] for row in rows]


def test_every_branch_of_the_series_sql_carries_its_tier_conditions() -> None:
    sql = tiered_series_sql(CATALOGUE[0])
    for conditions in TIER_CONDITIONS.values():
        for condition in conditions:
            assert condition in sql
    assert sql.count("UNION ALL") == len(TIER_CONDITIONS) - 1


def test_the_dashboard_picks_the_tier_the_api_picks() -> None:
    picked = dashboard_tiers(RANGES)
    mismatches = [
        (str(end - start), api_tier(start, end), tiers)
        for (start, end), tiers in zip(RANGES, picked, strict=True)
        if tiers != [api_tier(start, end)]
    ]
    assert not mismatches, mismatches[:10]
    # The edges really are covered: both thresholds switch tiers inside the tested lengths.
    chosen = {str(end - start): api_tier(start, end) for start, end in RANGES}
    assert chosen["7 days, 23:59:59"] == "hourly" and chosen["8 days, 0:00:00"] == "daily"
    assert chosen["90 days, 23:59:59"] == "daily" and chosen["91 days, 0:00:00"] == "monthly"
