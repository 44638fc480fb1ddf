"""/metrics on both dialects: oracle totals, monotonic counters through corrections, the
service's own metrics, promtool, negotiation, gzip, auth and cardinality controls."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from sqlalchemy import delete, select

from dashboard_metrics.aggregator import totals
from dashboard_metrics.aggregator.totals import advance
from dashboard_metrics.core import migrate, state
from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import CATALOGUE
from dashboard_metrics.core.schema import TOTALS_VERSION, metric_totals
from dashboard_metrics.core.values import Agg
from tests import oracle
from tests.harness import Harness, utc
from tests.test_metrics_helpers import (
    NS,
    assert_matches_oracle,
    delete_usage,
    expected_samples,
    parse,
    populate,
    scrape,
    serving,
    value,
)

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def promtool(body: str) -> tuple[int, str]:
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout + done.stderr


async def test_scrape_equals_oracle_totals_and_passes_promtool(h: Harness) -> None:
    orgs = [h.org(), h.org(), h.org()]
    populate(h, orgs)
    h.aggregator.tick()
    async with serving(h) as client:
        text = await scrape(client)
        assert_matches_oracle(parse(text), h)
        assert promtool(text) == (0, "")
        assert "_created" not in text
        response = await client.get("/metrics", headers={"Accept": OPENMETRICS})
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        om = await response.text()
    assert om.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(om)}  # strict OpenMetrics parser
    assert families[f"{NS}_llm_calls"].type == "counter"
    assert families[f"{NS}_llm_call_cost_usd"].type == "histogram"
    # OpenMetrics only: UNIT where the family name ends with its unit, build_info as an info.
    units = {name: f.unit for name, f in families.items() if f.unit}
    assert units == {
        f"{NS}_llm_call_cost_usd": "usd",
        f"{NS}_document_pages": "pages",
        f"{NS}_failed_document_pages": "pages",
        f"{NS}_llm_call_tokens": "tokens",
        f"{NS}_llm_calls": "calls",
        f"{NS}_llm_summarization_calls": "calls",
        f"{NS}_deployed_api_requests": "requests",
        f"{NS}_etl_pipeline_executions": "executions",
        f"{NS}_prompt_executions": "executions",
        "dashboard_metrics_tick_duration_seconds": "seconds",
        "dashboard_metrics_http_request_duration_seconds": "seconds",
        "dashboard_metrics_last_successful_tick_timestamp_seconds": "seconds",
        "dashboard_metrics_rollup_lag_seconds": "seconds",
    }
    assert f"# UNIT {NS}_llm_call_cost_usd usd\n" in om and "# UNIT" not in text
    build = families["dashboard_metrics_build"]
    assert build.type == "info"
    assert [(s.name, s.value) for s in build.samples] == [("dashboard_metrics_build_info", 1)]
    assert "# TYPE dashboard_metrics_build_info gauge\n" in text
    # The process and platform collectors of this app's registry, in both formats.
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "python_info"):
        assert name in families, name
        assert name.removesuffix("_seconds") in text


async def test_corrections_never_lower_a_counter(h: Harness) -> None:
    a, b = h.org(), h.org()
    populate(h, [a, b])
    h.aggregator.tick()
    async with serving(h) as client:
        before = parse(await scrape(client))
        removed = delete_usage(h, a, 3)
        assert removed == 3
        h.clock.advance(minutes=1)
        h.aggregator.tick(reconcile=True)
        after = parse(await scrape(client))
    for key, old in before.items():
        if key[0].startswith(NS):
            assert after[key] >= old, (key, old, after[key])
    # Counters keep what they showed; the corrections family holds what was taken away, and
    # the difference is exactly the oracle's current total.
    current = oracle.totals(oracle.events(h.source))
    for metric in CATALOGUE:
        name = f"{NS}_{metric.prometheus_name}"
        shown_name = name if not metric.is_histogram else f"{name}_count"
        corrections = f"{NS}_{metric.prometheus_name.removesuffix('_total')}_corrections_total"
        for org in (a, b):
            shown = value(after, shown_name, organization=org.string_id)
            fixed = value(after, corrections, organization=org.string_id)
            assert shown is not None and fixed is not None
            assert shown == value(before, shown_name, organization=org.string_id)
            assert shown - fixed == current[(org.string_id, metric.name)].count
            if org is a and metric.name in {"llm_calls", "llm_usage", "llm_tokens"}:
                assert fixed == removed
            if org is b:
                assert fixed == 0


async def test_new_events_raise_counters_by_exactly_their_count(h: Harness) -> None:
    a = h.org()
    populate(h, [a])
    h.aggregator.tick()
    async with serving(h) as client:
        before = parse(await scrape(client))
        h.clock.advance(minutes=1)
        for _ in range(4):
            a.usage(h.clock(), reason="challenge", cost=0.02, tokens=900)
        h.aggregator.tick()
        after = parse(await scrape(client))
    org = a.string_id
    for name, rise in (
        ("llm_calls_total", 4),
        ("llm_challenges_total", 4),
        ("documents_processed_total", 0),
    ):
        assert (
            value(after, f"{NS}_{name}", organization=org)
            == (value(before, f"{NS}_{name}", organization=org) or 0) + rise
        )
    bucket = value(after, f"{NS}_llm_call_cost_usd_bucket", organization=org, le="0.025")
    assert (
        bucket
        == (value(before, f"{NS}_llm_call_cost_usd_bucket", organization=org, le="0.025") or 0) + 4
    )
    for item in expected_samples(h):
        assert value(after, item.name, **item.labels) == pytest.approx(item.value)


def test_quiet_ticks_leave_totals_alone_and_only_changed_pairs_move(h: Harness) -> None:
    a, b = h.org(), h.org()
    populate(h, [a, b])
    h.aggregator.tick()

    def snapshot() -> dict[tuple[str, str], object]:
        with h.rollup.connect() as conn:
            rows = conn.execute(select(metric_totals))
            return {(r.organization_id, r.metric_name): r.modified_at for r in rows}

    def version() -> int:
        with h.rollup.connect() as conn:
            return int(state.get(conn, TOTALS_VERSION) or 0)

    first, v1 = snapshot(), version()
    h.clock.advance(minutes=1)
    h.aggregator.tick()
    assert (snapshot(), version()) == (first, v1)
    h.clock.advance(minutes=1)
    a.usage(h.clock(), reason="summarize")
    h.aggregator.tick()
    second = snapshot()
    assert version() == v1 + 1
    moved = {pair for pair in second if second[pair] != first[pair]}
    assert moved == {
        (a.string_id, name)
        for name in ("llm_calls", "summarization_calls", "llm_usage", "llm_tokens")
    }


def _stored_counts(h: Harness) -> set[tuple[object, ...]]:
    t = metric_totals.c
    with h.rollup.connect() as conn:
        query = select(t.organization_id, t.metric_name, t.total_count)
        return {tuple(r) for r in conn.execute(query)}


def _stored_totals(h: Harness) -> dict[tuple[str, str], tuple[object, ...]]:
    t = metric_totals.c
    columns = (t.metric_type, t.month_rows, t.total_value, t.total_count, t.total_buckets)
    monotonic = (t.monotonic_value, t.monotonic_count, t.monotonic_buckets)
    with h.rollup.connect() as conn:
        query = select(t.organization_id, t.metric_name, *columns, *monotonic, t.modified_at)
        return {(r[0], r[1]): tuple(r[2:]) for r in conn.execute(query)}


def test_migration_fills_totals_for_existing_rollups(h: Harness) -> None:
    """Migration 0002's frozen fill writes what the writer's refresh writes, over rollups that
    span several months (histogram buckets summed per slot)."""
    a = h.org()
    populate(h, [a])  # three months
    h.aggregator.tick()
    expected = {key: row[:-1] for key, row in _stored_totals(h).items()}
    from alembic import command

    config = migrate._config()
    with h.rollup.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
    migrate.upgrade(h.rollup)
    got = _stored_totals(h)
    assert {key: row[:-1] for key, row in got.items()} == expected
    assert len(got) == len(CATALOGUE) and max(row[1] for row in got.values()) == 3
    assert all(row[-1].tzinfo is not None for row in got.values())  # read back as UTC


def test_histogram_corrections_are_monotonic_per_bucket() -> None:
    mono, old = Agg(10.0, 3, (1, 2, 0)), Agg(10.0, 3, (1, 2, 0))
    # One event moves from the second bucket to the third; another is deleted from the first.
    new = Agg(9.0, 2, (0, 1, 1))
    grown, corrected = advance(mono, old, new)
    assert corrected
    assert grown == Agg(10.0, 4, (1, 2, 1))
    # Later growth adds on top.
    grown2, corrected2 = advance(grown, new, Agg(12.0, 3, (1, 1, 1)))
    assert grown2 == Agg(13.0, 5, (2, 2, 1)) and not corrected2


async def test_totals_from_one_pass_over_the_tier(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backfill changes thousands of pairs; refresh_totals then reads the tier in one pass.
    monkeypatch.setattr(totals, "_FULL_SCAN_PAIRS", 0)
    populate(h, [h.org(), h.org()])
    h.backfill(days=120)
    async with serving(h) as client:
        assert_matches_oracle(parse(await scrape(client)), h)


async def test_a_vanished_monthly_row_is_found_without_a_stamp(h: Harness) -> None:
    a = h.org()
    populate(h, [a], months=(1, 2))
    only_march = a.usage(utc(2026, 3, 14, 9, 0), reason="summarize", cost=0.3, tokens=3000)
    h.aggregator.tick()
    with h.source.begin() as conn:
        conn.execute(delete(st.usage).where(st.usage.c.id == only_march))
    h.clock.advance(minutes=1)
    h.aggregator.tick(reconcile=True)  # deletes the March rows; January and February stay
    with h.rollup.connect() as conn:
        rows = dict(
            conn.execute(
                select(metric_totals.c.metric_name, metric_totals.c.month_rows).where(
                    metric_totals.c.organization_id == a.string_id
                )
            ).all()
        )
    months = oracle.rollup(oracle.events(h.source), "monthly")
    for name in ("llm_calls", "summarization_calls"):
        assert rows[name] == sum(1 for key in months if key[0] == a.string_id and key[2] == name)
    assert rows["llm_calls"] == 2
    async with serving(h) as client:
        samples = parse(await scrape(client))
    current = oracle.totals(oracle.events(h.source))
    for name in ("llm_calls", "summarization_calls"):
        metric = next(m for m in CATALOGUE if m.name == name)
        shown = value(samples, f"{NS}_{metric.prometheus_name}", organization=a.string_id)
        fixed = value(
            samples,
            f"{NS}_{metric.prometheus_name.removesuffix('_total')}_corrections_total",
            organization=a.string_id,
        )
        assert fixed == 1
        assert shown is not None and shown - fixed == current[(a.string_id, name)].count
