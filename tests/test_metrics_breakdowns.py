"""/metrics with dimension labels (DASHBOARD_METRICS_METRICS_DIMENSIONS), on both dialects:
labelled families equal the oracle's dimension events, promtool stays clean, the series cap
falls back to organization series and says so, counters never decrease when events move
between label values or vanish, and the info families carry the names."""

from __future__ import annotations

import bisect
import logging
import math
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as hs
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from sqlalchemy import create_engine, delete, select, update

from dashboard_metrics.core import migrate
from dashboard_metrics.core import source_tables as st
from dashboard_metrics.core.catalogue import CATALOGUE, Dimension
from dashboard_metrics.core.catalogue import Metric as CatalogueMetric
from dashboard_metrics.core.db import rollup_engine
from dashboard_metrics.core.schema import metric_breakdown_totals
from dashboard_metrics.exporter.app import create_app
from dashboard_metrics.exporter.metrics.fastrender import SeriesRow
from dashboard_metrics.exporter.metrics.usage import (
    EOF_LINE,
    Built,
    FamiliesCollector,
    families_from,
)
from tests import oracle
from tests.harness import Harness, Org, utc
from tests.test_metrics_collector import OPENMETRICS, promtool
from tests.test_metrics_helpers import (
    NS,
    Samples,
    assert_matches_oracle,
    parse,
    populate,
    scrape,
    serving,
    value,
)

MODELS = ("gpt-4o", "claude-3", "")
ALL = "model,workflow,deployment"
LOGGER = "dashboard_metrics.metrics"


def llm_usage(
    org: Org, created: datetime, model: str, execution_id: str | None, cost: float, tokens: int
) -> str:
    """A usage row with a model, and (through its execution) a workflow and a deployment."""
    row_id = org.usage(created, cost=cost, tokens=tokens, reason="challenge")
    workflow = org.workflow_id if execution_id else None
    with org.h.source.begin() as conn:
        conn.execute(
            update(st.usage)
            .where(st.usage.c.id == row_id)
            .values(model_name=model, workflow_id=workflow, execution_id=execution_id)
        )
    return row_id


def populate_dims(h: Harness, orgs: list[Org], seed: int = 3) -> None:
    """populate()'s events plus LLM calls spread over models, executions and deployments."""
    populate(h, orgs, seed=seed)
    rnd = random.Random(seed)
    for org in orgs:
        for month in (1, 2):
            created = utc(2026, month, 12, rnd.randrange(24), 7)
            runs = [org.execution(created, kind=kind) for kind in ("api", "etl", "manual")]
            for _ in range(6):
                llm_usage(
                    org,
                    created,
                    rnd.choice(MODELS),
                    rnd.choice([*runs, None]),
                    rnd.choice([0.00005, 0.02, 0.3, 9.0]),
                    rnd.choice([50, 3000, 200000]),
                )


def shown(metric: CatalogueMetric, dims: Sequence[str]) -> tuple[str, ...]:
    return tuple(d for d in dims if Dimension(d) in metric.dimensions)


def expected_labelled(h: Harness, dims: Sequence[str]) -> dict[tuple[str, tuple], float]:
    """Every usage sample the oracle's events imply with ``dims`` as labels (a metric that
    carries none of them: organization only)."""
    sums: dict[tuple[str, tuple], oracle.Sums] = {}
    for org, name, _when, amount, event_dims in oracle.dimension_events(h.source):
        metric = next(m for m in CATALOGUE if m.name == name)
        by_name = dict(zip(("model", "workflow", "deployment"), event_dims, strict=True))
        labels = (("organization", org), *((d, by_name[d]) for d in shown(metric, dims)))
        cell = sums.setdefault((name, labels), oracle.Sums())
        cell.value += amount
        cell.count += 1
        if metric.is_histogram:
            cell.buckets = cell.buckets or [0] * (len(metric.buckets) + 1)
            cell.buckets[bisect.bisect_left(metric.buckets, amount)] += 1
    out: dict[tuple[str, tuple], float] = {}
    for (name, labels), cell in sums.items():
        metric = next(m for m in CATALOGUE if m.name == name)
        family = f"{NS}_{metric.prometheus_name}"
        key = tuple(sorted(labels))
        if not metric.is_histogram:
            out[(family, key)] = cell.count
            continue
        running = 0
        for bound, count in zip([*metric.buckets, math.inf], cell.buckets, strict=True):
            running += count
            le = "+Inf" if bound == math.inf else repr(float(bound))
            out[(f"{family}_bucket", tuple(sorted((*labels, ("le", le)))))] = running
        out[(f"{family}_count", key)] = cell.count
        out[(f"{family}_sum", key)] = cell.value
    return out


def usage_samples(samples: Samples) -> Samples:
    """The usage families' samples (not corrections, info or service families)."""
    names = {f"{NS}_{m.prometheus_name}" for m in CATALOGUE}
    return {
        key: v
        for key, v in samples.items()
        if key[0].removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") in names
    }


def assert_equal_samples(got: Samples, expected: dict[tuple[str, tuple], float]) -> None:
    assert set(got) == set(expected), sorted(set(got) ^ set(expected))[:5]
    for key, want in expected.items():
        assert math.isclose(got[key], want, rel_tol=1e-9, abs_tol=1e-9), (key, got[key], want)


@pytest.mark.parametrize("dims", [("model",), ("workflow", "deployment"), tuple(ALL.split(","))])
async def test_labelled_families_equal_the_oracle(h: Harness, dims: tuple[str, ...]) -> None:
    orgs = [h.org(), h.org()]
    populate_dims(h, orgs)
    h.aggregator.tick()
    async with serving(h, metrics_dimensions=",".join(dims)) as client:
        text = await scrape(client)
        om = await (await client.get("/metrics", headers={"Accept": OPENMETRICS})).text()
    samples = parse(text)
    assert_equal_samples(usage_samples(samples), expected_labelled(h, dims))
    # Corrections carry the same labels, all zero; nothing is capped.
    for (name, labels), amount in samples.items():
        if name.endswith("_corrections_total"):
            assert amount == 0 and ("organization" in dict(labels)), (name, labels)
        if name == "dashboard_metrics_metrics_series_capped":
            assert amount == 0
    assert promtool(text) == (0, "")
    assert {f.name for f in parse_openmetrics(om)} >= {f"{NS}_llm_calls"}  # strict parser


def usage_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if f" {NS}_" in line or line.startswith(NS)]


async def test_without_dimensions_metrics_is_exactly_as_before(h: Harness) -> None:
    populate_dims(h, [h.org()])
    h.aggregator.tick()
    async with serving(h) as plain, serving(h, metrics_dimensions=" ") as empty:
        before, after = await scrape(plain), await scrape(empty)
    assert usage_lines(before) == usage_lines(after) and usage_lines(before)
    assert_matches_oracle(parse(before), h)
    assert "series_capped" not in before and f"{NS}_workflow_info" not in before


async def test_the_series_cap_falls_back_to_organization_series(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    org = h.org()
    populate_dims(h, [org])
    h.aggregator.tick()
    models = {e[4][0] for e in oracle.dimension_events(h.source) if e[1] == "llm_calls"}
    caplog.set_level(logging.INFO, logger=LOGGER)
    # One label set per model: the llm_calls counter fits, every histogram (its buckets,
    # _count and _sum per label set) does not.
    cap = len(models)
    async with serving(h, metrics_dimensions="model", metrics_max_series=cap) as client:
        await scrape(client)
        samples = parse(await scrape(client))
    capped = {
        dict(labels)["family"]: amount
        for (name, labels), amount in samples.items()
        if name == "dashboard_metrics_metrics_series_capped"
    }
    model_families = [m for m in CATALOGUE if Dimension.MODEL in m.dimensions]
    assert capped == {
        f"{NS}_{m.prometheus_name}": (1 if m.is_histogram else 0) for m in model_families
    }
    # The capped families show exactly the organization series (the oracle's totals).
    labelled, fallback = expected_labelled(h, ["model"]), expected_labelled(h, [])
    for metric in model_families:
        family = f"{NS}_{metric.prometheus_name}"
        source = fallback if metric.is_histogram else labelled
        want = {k: v for k, v in source.items() if k[0].startswith(family)}
        got = {k: v for k, v in usage_samples(samples).items() if k[0].startswith(family)}
        assert_equal_samples(got, want)
    lines = [r for r in caplog.records if r.getMessage() == "metrics: series cap"]
    assert len(lines) == 1  # once per change, not per scrape
    fields = lines[0].__dict__["fields"]
    assert fields["max_series"] == cap and fields["released"] == []
    assert fields["capped"] == sorted(name for name, over in capped.items() if over)


async def test_every_family_over_the_cap_is_exactly_todays_series(h: Harness) -> None:
    populate_dims(h, [h.org(), h.org()])
    h.aggregator.tick()
    async with serving(h, metrics_dimensions=ALL, metrics_max_series=1) as client:
        text = await scrape(client)
    samples = parse(text)
    assert_matches_oracle(samples, h)
    assert_equal_samples(usage_samples(samples), expected_labelled(h, []))
    capped = [
        amount
        for (name, _labels), amount in samples.items()
        if name == "dashboard_metrics_metrics_series_capped"
    ]
    assert capped and all(amount == 1 for amount in capped)
    assert not any(name.endswith("_info") and name.startswith(NS) for name, _ in samples)
    assert promtool(text) == (0, "")


async def test_counters_never_decrease_when_a_model_is_edited(h: Harness) -> None:
    org = h.org()
    populate_dims(h, [org])
    created = h.clock() - timedelta(hours=2)  # within the reconciliation window
    execution = org.execution(created, kind="api")
    rows = [llm_usage(org, created, "old-model", execution, 0.02, 700) for _ in range(3)]
    h.aggregator.tick()
    calls, fixes = f"{NS}_llm_calls_total", f"{NS}_llm_calls_corrections_total"
    old = {"organization": org.string_id, "model": "old-model"}
    new = {"organization": org.string_id, "model": "new-model"}
    async with serving(h, metrics_dimensions="model") as client:
        before = parse(await scrape(client))
        h.clock.advance(minutes=5)
        with h.source.begin() as conn:  # the model of one usage row edited
            conn.execute(
                update(st.usage)
                .where(st.usage.c.id == rows[0])
                .values(model_name="new-model", modified_at=h.clock())
            )
        h.clock.advance(minutes=1)
        h.aggregator.tick()
        after = parse(await scrape(client))
        with h.source.begin() as conn:  # the other two deleted: found by the reconciliation
            conn.execute(delete(st.usage).where(st.usage.c.id.in_(rows[1:])))
        h.clock.advance(minutes=1)
        h.aggregator.tick(reconcile=True)
        final = parse(await scrape(client))
    assert value(before, calls, **old) == 3 and value(before, calls, **new) is None
    assert value(after, calls, **old) == 3  # the counter keeps what it showed
    assert value(after, calls, **new) == 1  # and the new model's grows
    assert value(after, fixes, **old) == 1  # the moved event, which the current total lacks
    assert value(final, calls, **old) == 3  # its true total is zero now: the series stays
    assert value(final, fixes, **old) == 3
    for earlier, later in ((before, after), (after, final)):
        for key, amount in usage_samples(earlier).items():
            assert usage_samples(later).get(key, -1) >= amount, (key, amount)
    # Labelled minus corrections is the current (oracle) total of each label set.
    current = expected_labelled(h, ["model"])
    for (name, labels), amount in usage_samples(final).items():
        if name == calls:
            assert amount - final[(fixes, labels)] == current.get((name, labels), 0), labels


async def test_info_families_carry_the_names(h: Harness) -> None:
    a, b = h.org(), h.org()
    populate_dims(h, [a, b])
    h.aggregator.tick()
    async with serving(h, metrics_dimensions="workflow,deployment") as client:
        text = await scrape(client)
    samples = parse(text)
    assert promtool(text) == (0, "")
    for org in (a, b):
        assert (
            value(
                samples,
                f"{NS}_workflow_info",
                organization=org.string_id,
                workflow=org.workflow_id,
                workflow_name=f"wf-{org.pk}",
            )
            == 1
        )
        for deployment, name, kind in (
            (org.api_id, "api", "API"),
            (org.etl_id, f"ETL-{org.pk}", "ETL"),
            (org.task_id, f"TASK-{org.pk}", "TASK"),
        ):
            labels = {"deployment": deployment, "deployment_name": name, "deployment_type": kind}
            got = value(samples, f"{NS}_deployment_info", organization=org.string_id, **labels)
            assert got == 1, (deployment, name)
    # Only ids the usage families show: one workflow per organization here.
    assert sum(1 for name, _ in samples if name == f"{NS}_workflow_info") == 2


async def test_replicas_expose_the_same_values(h: Harness) -> None:
    populate_dims(h, [h.org(), h.org()])
    h.aggregator.tick()
    async with serving(h, metrics_dimensions=ALL) as one, serving(h, metrics_dimensions=ALL) as two:
        first, second = parse(await scrape(one)), parse(await scrape(two))
    assert usage_samples(first) == usage_samples(second)
    info = {k: v for k, v in first.items() if k[0].endswith("_info")}
    assert info == {k: v for k, v in second.items() if k[0].endswith("_info")}


def _stored_breakdown_totals(h: Harness) -> dict[tuple, tuple]:
    t = metric_breakdown_totals
    with h.rollup.connect() as conn:
        rows = conn.execute(select(t)).mappings().all()
    key = ("organization_id", "metric_name", "model", "workflow", "deployment")
    rest = ("metric_type", "month_rows", "total_value", "total_count", "total_buckets")
    return {tuple(r[k] for k in key): tuple(r[k] for k in rest) for r in rows}


def test_migration_0005_fills_the_breakdown_totals_and_downgrades(h: Harness) -> None:
    populate_dims(h, [h.org()])
    h.aggregator.tick()
    expected = _stored_breakdown_totals(h)
    assert expected
    from alembic import command

    config = migrate._config()
    with h.rollup.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    assert migrate.current_revision(h.rollup) == "0004"
    migrate.upgrade(h.rollup)
    assert migrate.current_revision(h.rollup) == migrate.head_revision()
    assert _stored_breakdown_totals(h) == expected


async def test_names_unreadable_leave_the_usage_families_served(
    h: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    populate_dims(h, [h.org()])
    h.aggregator.tick()
    settings = h.settings.with_overrides(metrics_dimensions="workflow")
    reader = rollup_engine(settings, writer=False)
    gone = create_engine(f"sqlite:///{tmp_path / 'missing' / 'source.db'}")  # cannot open
    app = create_app(settings, clock=h.clock, rollup=reader, source=gone)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with TestClient(TestServer(app)) as client:
        samples = parse(await scrape(client))
    reader.dispose()
    assert value(samples, "dashboard_metrics_database_up") == 1
    assert_equal_samples(usage_samples(samples), expected_labelled(h, ["workflow"]))
    assert not any(name == f"{NS}_workflow_info" for name, _ in samples)
    assert any(r.getMessage().endswith("names unavailable") for r in caplog.records)


async def test_top_n_applies_to_the_labelled_series(h: Harness) -> None:
    busy, quiet = h.org(), h.org()
    populate_dims(h, [busy, busy, quiet])  # twice the events for the busy one
    h.aggregator.tick()
    async with serving(h, metrics_dimensions=ALL, metrics_top_n=1) as client:
        samples = parse(await scrape(client))
    orgs = {dict(labels).get("organization") for name, labels in usage_samples(samples)}
    assert orgs == {busy.string_id}
    infos = {dict(k[1])["organization"] for k in samples if k[0].endswith("ment_info")}
    assert infos == {busy.string_id}


labels_text = hs.text(min_size=0, max_size=8)  # quotes, backslashes, newlines, unicode


@settings(max_examples=100, deadline=None)
@given(
    data=hs.data(),
    dims=hs.sampled_from([("model",), ("workflow", "deployment"), ("model", "workflow")]),
)
def test_labelled_fast_rendering_equals_prometheus_client(
    data: hs.DataObject, dims: tuple[str, ...]
) -> None:
    labelled: dict[str, tuple[str, ...]] = {}
    series: dict[str, list[SeriesRow]] = {}
    for metric in CATALOGUE:
        names = shown(metric, dims)
        rows = []
        for _ in range(data.draw(hs.integers(0, 3))):
            values = [data.draw(labels_text) for _ in range(len(names) + 1)]
            labels = tuple(sorted(zip(("organization", *names), values, strict=True)))
            count = data.draw(hs.integers(0, 10**6))
            buckets = None
            if metric.is_histogram:
                slots = metric.bucket_slots
                buckets = tuple(
                    data.draw(hs.lists(hs.integers(0, 99), min_size=slots, max_size=slots))
                )
            value_ = data.draw(hs.floats(0, 1e9, allow_nan=False))
            rows.append((labels, value_, count, buckets, data.draw(hs.integers(0, count))))
        unique = {row[0]: row for row in rows}
        series[metric.name] = sorted(unique.values())
        if names:
            labelled[metric.name] = names
    for accept in ("text/plain", OPENMETRICS):
        encoder, content_type = choose_encoder(accept)
        reference = encoder(FamiliesCollector(families_from(series, NS, labelled)))
        fast = Built(1, series, NS, labelled).render(encoder, content_type)
        assert fast == reference.removesuffix(EOF_LINE)
