"""`dashboard-metrics report` as a process, compared with the oracle's numbers from raw source
rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from dashboard_metrics.cli.report_breakdown import TOP, TOPS
from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import METRICS
from dashboard_metrics.core.db import source_engine
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.timeutil import utcnow
from tests import oracle
from tests.processes import run

DAYS = 5


def _prepare(settings: Settings) -> None:
    until = (utcnow() - timedelta(minutes=1)).isoformat()
    for args in (
        ("generate-test-data", "--orgs", "2", "--days", "4", "--records-per-day", "3"),
        ("migrate",),
        ("backfill", "--days", str(DAYS + 1)),
    ):
        extra = ("--seed", "5", "--until", until) if args[0] == "generate-test-data" else ()
        result = run(settings, *args, *extra)
        assert result.returncode == 0, result.stderr


def _expected(settings: Settings, start: datetime) -> dict[str, Any]:
    """org -> {"totals": metric -> [value, count], "daily": (metric, day) -> value}."""
    engine = source_engine(settings)
    try:
        events = oracle.events(engine)
    finally:
        engine.dispose()
    out: dict[str, Any] = defaultdict(
        lambda: {"totals": defaultdict(lambda: [0.0, 0]), "daily": defaultdict(float)}
    )
    for org, metric, when, value in events:
        if when < start:
            continue
        out[org]["totals"][metric][0] += value
        out[org]["totals"][metric][1] += 1
        out[org]["daily"][(metric, when.date())] += value
    return out


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def test_report_matches_the_oracle(db_settings: Settings) -> None:
    _prepare(db_settings)
    result = run(db_settings, "report", "--json", "--days", str(DAYS))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    start = datetime.fromisoformat(report["start_date"]).astimezone(UTC)
    days = [date.fromisoformat(d) for d in report["days"]]
    assert len(days) == DAYS and start.date() == days[0]
    assert start.hour == start.minute == 0
    expected = _expected(db_settings, start)
    assert {o["organization_id"] for o in report["organizations"]} == set(expected)
    for org in report["organizations"]:
        want = expected[org["organization_id"]]
        for metric in METRICS:
            value, count = want["totals"].get(metric, [0.0, 0])
            got = org["totals"][metric]
            assert close(got["value"], value) and got["count"] == count, (metric, got, value)
            for day, got_day in zip(days, org["daily"][metric], strict=True):
                assert close(got_day, want["daily"].get((metric, day), 0.0)), (metric, day)
        costs = sorted(
            ((want["daily"].get(("llm_usage", d), 0.0), d) for d in days),
            key=lambda item: (-item[0], item[1]),
        )
        top = [d.isoformat() for cost, d in costs[:3] if cost > 0]
        assert [entry["date"] for entry in org["top_cost_days"]] == top
        _check_breakdowns(db_settings, org, start)


def _breakdown_sums(settings: Settings, org: str, start: datetime) -> dict[str, dict[str, float]]:
    """ranking key -> dimension value -> the oracle's sum over the window."""
    engine = source_engine(settings)
    try:
        events = oracle.dimension_events(engine)
    finally:
        engine.dispose()
    out: dict[str, dict[str, float]] = {top.key: defaultdict(float) for top in TOPS}
    index = {"model": 0, "workflow": 1, "deployment": 2}
    for event_org, name, when, value, dims in events:
        for top in TOPS:
            if event_org == org and name == top.metric and when >= start:
                out[top.key][dims[index[top.dimension.value]]] += value
    return out


def _check_breakdowns(settings: Settings, org: dict[str, Any], start: datetime) -> None:
    """Each ranking: the oracle's largest values, largest first, with the source's names."""
    sums = _breakdown_sums(settings, org["organization_id"], start)
    names = _workflow_names(settings)
    for top in TOPS:
        want = {k: v for k, v in sums[top.key].items() if v}
        got = org["breakdowns"][top.key]
        assert len(got) == min(TOP, len(want)) and got, top.key
        values = [entry["value"] for entry in got]
        assert values == sorted(values, reverse=True)
        for entry in got:
            key = entry[top.dimension.value] or ""
            assert close(entry["value"], want[key]), (top.key, entry)
            if top.dimension.value == "workflow":
                assert entry["workflow_name"] == names.get(key), entry
        shown = {entry[top.dimension.value] or "" for entry in got}
        assert all(v <= values[-1] + 1e-9 for k, v in want.items() if k not in shown)


def _workflow_names(settings: Settings) -> dict[str, str]:
    engine = source_engine(settings)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(st.workflow.c.id, st.workflow.c.workflow_name))
            return {str(i): name for i, name in rows}
    finally:
        engine.dispose()


def test_report_text_for_one_organization(db_settings: Settings) -> None:
    _prepare(db_settings)
    everyone = json.loads(run(db_settings, "report", "--json", "--days", "3").stdout)
    org = everyone["organizations"][0]["organization_id"]
    result = run(db_settings, "report", "--org-id", org, "--days", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(org)
    assert sum(line.startswith("org_") for line in lines) == 1  # only that organization
    start = datetime.fromisoformat(everyone["start_date"]).astimezone(UTC)
    want = _expected(db_settings, start)[org]
    calls = int(want["totals"]["llm_calls"][1])
    row = next(line for line in lines if line.strip().startswith("llm_calls "))
    assert row.split()[1:3] == [f"{calls:,}", f"{calls:,}"]
    spark = row.split("  ")[-1]
    assert len(spark) == 3 and set(spark) <= set(" ▁▂▃▄▅▆▇█")
    per_day = [
        want["daily"].get(("llm_calls", start.date() + timedelta(days=i)), 0) for i in (0, 1, 2)
    ]
    assert spark[per_day.index(max(per_day))] == "█"
    assert all((c == " ") == (v == 0) for c, v in zip(spark, per_day, strict=True))
    assert any(line.strip().startswith("top cost days: ") for line in lines)
    found = everyone["organizations"][0]["breakdowns"]
    for top in TOPS:
        line = next(line for line in lines if line.strip().startswith(f"{top.title}: "))
        first = found[top.key][0]
        name = first.get("workflow_name") or first[top.dimension.value]
        assert line.split(": ", 1)[1].startswith(f"{name} "), line


def test_report_unknown_organization_and_range(db_settings: Settings) -> None:
    _prepare(db_settings)
    unknown = run(db_settings, "report", "--org-id", "org_nobody")
    assert unknown.returncode == 1
    assert "org_nobody" in unknown.stderr and "Traceback" not in unknown.stderr
    too_long = run(db_settings, "report", "--days", "400")
    assert too_long.returncode == 1
    assert too_long.stderr.startswith("dashboard-metrics: error: --days 400: ")
    assert len(too_long.stderr.strip().splitlines()) == 1
