"""Pushed metrics (DASHBOARD_METRICS_METRICS_FILE, examples/hitl-metrics.yaml) everywhere the
built-in ones are, with no code listing them: /metrics families (values, HELP/TYPE, labels,
buckets; promtool clean), the generated dashboards' panels and the recording rules (promtool).

The rollup rows of the pushed metrics are written straight into the tiers and totals as the
aggregator's fold would leave them (`seed`), so these tests do not depend on the fold.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from dashboard_metrics.cli.main import main as cli_main
from dashboard_metrics.core import catalogue, pushed_metrics
from dashboard_metrics.core.catalogue import CATALOGUE, METRICS
from dashboard_metrics.dashboards import checks, generate
from dashboard_metrics.dashboards.promql import value_series
from dashboard_metrics.dashboards.rules import hourly_rule
from dashboard_metrics.exporter.metrics.usage import EOF_LINE, Built, FamiliesCollector
from dashboard_metrics.exporter.metrics.usage import families_from as reference_families
from tests.conftest import EXAMPLE_METRICS_FILE
from tests.harness import Harness, Org, utc
from tests.test_metrics_collector import OPENMETRICS, promtool
from tests.test_metrics_helpers import NS, Samples, parse, scrape, serving, value
from tests.test_rules_promtool import promtool as run_promtool

GENERATED = Path(generate.__file__).resolve().parent / "generated"
NOT_A_UUID = "review-queue-7"  # a pushed label may hold any text, not only Unstract's ids


@dataclass(frozen=True)
class Pushed:
    """One accepted event of a pushed metric."""

    org: str
    metric: str
    when: datetime
    value: float = 1.0
    workflow: str = ""


def seed(h: Harness, events: Sequence[Pushed]) -> None:
    """Store ``events`` as the ingest endpoint does (ids by position: seeding a longer list
    again adds only its new events) and fold them into every tier with a tick."""
    for index, event in enumerate(events):
        labels = {"workflow": event.workflow} if event.workflow else {}
        h.push(event.org, f"event-{index}", event.metric, event.value, event.when, **labels)
    h.aggregator.tick()
    h.assert_matches_oracle()


REVIEW_SECONDS = (5.0, 30.0, 45.0, 400.0, 5000.0)


def hitl_events(a: Org, b: Org) -> list[Pushed]:
    """Events of the three example metrics for two organizations, over two months: ``a``'s in
    its workflow (a uuid with a name) or in none, ``b``'s under a label that is no uuid."""
    march, feb = utc(2026, 3, 14, 9, 10), utc(2026, 2, 20, 16, 0)
    wf = a.workflow_id
    return [
        Pushed(a.string_id, "hitl_reviews", march, workflow=wf),
        Pushed(a.string_id, "hitl_reviews", utc(2026, 3, 15, 10, 5), workflow=wf),
        Pushed(a.string_id, "hitl_reviews", march, value=3.0, workflow=wf),
        Pushed(a.string_id, "hitl_reviews", feb),
        Pushed(b.string_id, "hitl_reviews", march, workflow=NOT_A_UUID),
        Pushed(b.string_id, "hitl_reviews", feb, value=2.0, workflow=NOT_A_UUID),
        Pushed(a.string_id, "hitl_completions", march, workflow=wf),
        Pushed(a.string_id, "hitl_completions", utc(2026, 3, 15, 11, 0), workflow=wf),
        *(
            Pushed(a.string_id, "hitl_review_seconds", march, seconds, wf)
            for seconds in REVIEW_SECONDS
        ),
        Pushed(b.string_id, "hitl_review_seconds", feb, 12.5, NOT_A_UUID),
    ]


def expected(events: Sequence[Pushed], dims: Sequence[str] = ()) -> Samples:
    """The usage samples ``events`` imply, with the ``dims`` labels their metrics carry."""
    sums: dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]] = {}
    for e in events:
        metric = METRICS[e.metric]
        shown = [(d, e.workflow) for d in dims if d == "workflow" and d in metric.dimensions]
        labels = tuple(sorted([("organization", e.org), *shown]))
        cell = sums.setdefault((e.metric, labels), [0.0, 0, [0] * metric.bucket_slots])
        cell[0] += e.value
        cell[1] += 1
        if metric.is_histogram:
            cell[2][bisect.bisect_left(metric.buckets, e.value)] += 1
    out: Samples = {}
    for (name, labels), (amount, count, slots) in sums.items():
        metric = METRICS[name]
        family = f"{NS}_{metric.prometheus_name}"
        if not metric.is_histogram:
            out[(family, labels)] = amount  # the sum of the pushed values
            continue
        running = 0
        for bound, in_bucket in zip([*metric.buckets, math.inf], slots, strict=True):
            running += in_bucket
            le = "+Inf" if bound == math.inf else repr(float(bound))
            out[(f"{family}_bucket", tuple(sorted((*labels, ("le", le)))))] = running
        out[(f"{family}_count", labels)] = count
        out[(f"{family}_sum", labels)] = amount
    return out


def pushed_samples(samples: Samples) -> Samples:
    names = {f"{NS}_{m.prometheus_name}" for m in catalogue.pushed_metrics()}
    return {
        key: v
        for key, v in samples.items()
        if key[0].removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") in names
    }


def assert_samples(got: Samples, want: Samples) -> None:
    assert set(got) == set(want), sorted(set(got) ^ set(want))[:6]
    for key, amount in want.items():
        assert math.isclose(got[key], amount, rel_tol=1e-9), (key, got[key], amount)


# -- /metrics -----------------------------------------------------------------------------------


async def test_pushed_families_on_metrics(h: Harness, pushed_catalogue: str) -> None:
    a, b = h.org(), h.org()
    events = hitl_events(a, b)
    seed(h, events)
    async with serving(h) as client:
        text = await scrape(client)
        response = await client.get("/metrics", headers={"Accept": OPENMETRICS})
        om = await response.text()
    assert promtool(text) == (0, "")
    samples = parse(text)
    assert_samples(pushed_samples(samples), expected(events))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in (
        ("hitl_reviews", "counter"),
        ("hitl_completions", "counter"),
        ("hitl_review_seconds", "histogram"),
    ):
        metric = METRICS[name]
        family = families[f"{NS}_{name}"]
        assert family.type == kind
        assert family.documentation.startswith(f"{metric.help}. All-time ")
        # A pushed metric is never corrected: its corrections family says 0.
        for org in (a, b):
            fixes = value(samples, f"{NS}_{name}_corrections_total", organization=org.string_id)
            assert fixes in (0, None)
    assert f"# TYPE {NS}_hitl_reviews_total counter" in text
    assert f"# HELP {NS}_hitl_review_seconds Time a reviewer spent" in text
    # The bucket bounds of the file, and +Inf.
    les = [
        dict(labels)["le"]
        for name, labels in samples
        if name == f"{NS}_hitl_review_seconds_bucket"
        and dict(labels)["organization"] == a.string_id
    ]
    assert les == [*(repr(float(x)) for x in METRICS["hitl_review_seconds"].buckets), "+Inf"]
    strict = {f.name: f for f in parse_openmetrics(om)}
    assert strict[f"{NS}_hitl_reviews"].type == "counter"
    assert strict[f"{NS}_hitl_review_seconds"].unit == "seconds"  # the name ends with its unit
    assert strict[f"{NS}_hitl_reviews"].unit == ""  # documents: not in the name


async def test_pushed_families_carry_their_dimension_labels(
    h: Harness, pushed_catalogue: str, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = h.org(), h.org()
    events = hitl_events(a, b)
    seed(h, events)
    caplog.set_level(logging.WARNING, logger="dashboard_metrics.metrics")
    async with serving(h, metrics_dimensions="workflow,deployment") as client:
        labelled = await scrape(client)
    async with serving(h, metrics_dimensions="model") as client:
        unlabelled = await scrape(client)
    assert promtool(labelled) == (0, "")
    samples = parse(labelled)
    assert_samples(pushed_samples(samples), expected(events, ["workflow"]))
    # Not kept by model: organization series only.
    assert_samples(pushed_samples(parse(unlabelled)), expected(events))
    # The uuid of a's workflow is named; b's label is no uuid: no name, and no failed lookup.
    info = {
        (dict(k)["organization"], dict(k)["workflow"])
        for n, k in samples
        if n == f"{NS}_workflow_info"
    }
    assert (a.string_id, a.workflow_id) in info
    assert not any(w == NOT_A_UUID for _o, w in info)
    assert not any("names unavailable" in r.getMessage() for r in caplog.records)


async def test_installing_a_metrics_file_rebuilds_the_families(h: Harness) -> None:
    """The families of one totals version are cached: a catalogue installed meanwhile (with no
    change of the totals) is picked up by the next scrape, and removing it too."""
    a, b = h.org(), h.org()
    try:
        pushed_metrics.install(str(EXAMPLE_METRICS_FILE))
        seed(h, hitl_events(a, b))
        catalogue.install_pushed(())
        async with serving(h) as client:
            before = parse(await scrape(client))
            pushed_metrics.install(str(EXAMPLE_METRICS_FILE))
            during = parse(await scrape(client))
            catalogue.install_pushed(())
            after = parse(await scrape(client))
    finally:
        catalogue.install_pushed(())
    hitl = f"{NS}_hitl_reviews_total"
    assert not any(name == hitl for name, _ in before)
    assert value(during, hitl, organization=a.string_id) == 6  # 1 + 1 + 3 + 1
    assert not any(name == hitl for name, _ in after)


@pytest.mark.parametrize("accept", ["text/plain", OPENMETRICS])
def test_fast_rendering_equals_prometheus_client_with_pushed_metrics(
    pushed_catalogue: str, accept: str
) -> None:
    series: dict[str, list[Any]] = {}
    for metric in CATALOGUE:
        slots = tuple(range(metric.bucket_slots)) if metric.is_histogram else None
        org = (("organization", "o1"),)
        series[metric.name] = [(org, 7.5, sum(slots or (3,)), slots, 2)]
    encoder, content_type = choose_encoder(accept)
    reference = encoder(FamiliesCollector(reference_families(series, NS)))
    assert Built(1, series, NS).render(encoder, content_type) == reference.removesuffix(EOF_LINE)
    assert b"unstract_hitl_reviews_total" in reference


# -- dashboards and rules -----------------------------------------------------------------------


def _queries(files: dict[str, str]) -> list[checks.Query]:
    return [q for name in generate.DASHBOARDS for q in checks.queries(json.loads(files[name]))]


def test_dashboards_have_panels_for_the_pushed_metrics(pushed_catalogue: str) -> None:
    files = generate.render()
    texts = [q.text for q in _queries(files)]
    for metric in catalogue.pushed_metrics():
        series = value_series(metric, NS)  # the counter, or the histogram's _sum
        assert sum(series in t for t in texts) >= 4, metric.name  # totals, trends, pie, tables
        assert any(hourly_rule(metric, NS) in t for t in texts), metric.name
        assert any(f"metric_name = '{metric.name}'" in t for t in texts), metric.name  # history
    for name in generate.DASHBOARDS:
        assert checks.problems(json.loads(files[name])) == [], name
    overview = json.loads(files["usage-overview.json"])
    by_workflow = [q.text for q in checks.queries(overview) if q.panel == "By workflow"]
    assert any(f"{NS}_hitl_reviews_total" in t for t in by_workflow)
    history = json.loads(files["usage-history.json"])
    table = [q.text for q in checks.queries(history) if q.panel == "By workflow"]
    assert any("'hitl_review_seconds'" in t for t in table)
    # Nothing is kept by deployment or model in the example file: no such pushed panels.
    assert not any(
        "hitl" in q.text for q in checks.queries(overview) if "deployment" in q.panel.lower()
    )


def test_without_a_metrics_file_the_generation_is_the_committed_one(
    pushed_catalogue: str,
) -> None:
    with_file = generate.render()
    catalogue.install_pushed(())
    plain = generate.render()
    for name, content in plain.items():
        assert (GENERATED / name).read_text() == content, name
    assert with_file != plain
    assert not any("hitl" in content for content in plain.values())


def test_generated_rules_with_the_file_pass_promtool(pushed_catalogue: str, tmp_path: Path) -> None:
    files = generate.render()
    rules = tmp_path / generate.RULES_FILE
    rules.write_text(files[generate.RULES_FILE])
    result = run_promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = {
        r["record"]
        for group in yaml.safe_load(files[generate.RULES_FILE])["groups"]
        for r in group["rules"]
        if "record" in r
    }
    assert {hourly_rule(m, NS) for m in catalogue.pushed_metrics()} <= recorded
    # Every PromQL expression of the dashboards generated with the file parses too.
    exprs = [checks.promql_for_test(q.text) for q in _queries(files) if q.kind == "promql"]
    groups = {"groups": [{"name": "e", "rules": [
        {"record": f"check_expr_{i}", "expr": e} for i, e in enumerate(exprs)
    ]}]}  # fmt: skip
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump(groups))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_mode_compares_with_the_generation_of_the_file(
    pushed_catalogue: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a metrics file set, `dashboards` writes and `--check` compares the generation that
    includes its metrics; the committed files (generated without one) then differ, and the
    message says why."""
    monkeypatch.setenv("DASHBOARD_METRICS_METRICS_FILE", pushed_catalogue)
    out = str(tmp_path / "out")
    assert cli_main(["dashboards", "--out", out]) == 0
    assert "hitl_reviews, hitl_completions, hitl_review_seconds" in capsys.readouterr().out
    assert cli_main(["dashboards", "--out", out, "--check"]) == 0
    assert cli_main(["dashboards", "--out", str(GENERATED), "--check"]) == 1
    err = capsys.readouterr().err
    assert "out of date" in err and "DASHBOARD_METRICS_METRICS_FILE" in err
    monkeypatch.delenv("DASHBOARD_METRICS_METRICS_FILE")
    assert cli_main(["dashboards", "--out", str(GENERATED), "--check"]) == 0
    assert cli_main(["dashboards", "--out", out, "--check"]) == 1


RANGES = {"hourly": 3, "daily": 30, "monthly": 365}  # days: each selects its tier


@pytest.mark.parametrize("tier", sorted(RANGES))
def test_history_panels_of_the_pushed_metrics_return_rows(
    pg_h: Harness, pushed_catalogue: str, tier: str
) -> None:
    """Every SQL query of the history dashboard that names a pushed metric, run on PostgreSQL
    over the seeded rollups for a range of each tier, returns rows."""
    a, b = pg_h.org(), pg_h.org()
    seed(pg_h, hitl_events(a, b))
    history = json.loads(generate.render()["usage-history.json"])
    names = [m.name for m in catalogue.pushed_metrics()]
    queries = [
        q
        for q in checks.queries(history)
        if q.kind == "sql" and any(f"'{n}'" in q.text for n in names)
    ]
    assert len(queries) >= len(names) + 1  # a series per metric, the workflow table
    end = pg_h.clock()
    start = end.timestamp() - RANGES[tier] * 86400
    iso = "%Y-%m-%dT%H:%M:%SZ"
    url = pg_h.settings.database_url.get_secret_value().replace("+psycopg", "")
    empty = []
    with psycopg.connect(url) as conn:
        for query in queries:
            sql = checks.sql_for_test(
                query.text,
                datetime.fromtimestamp(start, end.tzinfo).strftime(iso),
                end.strftime(iso),
                a.string_id,
            )
            if not conn.execute(sql).fetchall():  # type: ignore[call-overload]
                empty.append(f"{query.panel}: {sql}")
    assert not empty, "no rows for:\n" + "\n\n".join(empty)


OTHER_FILE = """
metrics:
  - name: ocr_pages
    type: counter
    help: Pages sent to an external OCR service
    dimensions: [model, deployment]
  - name: queue_depth_seen
    type: histogram
    help: Queue depth a worker saw when it took a document
    buckets: [1, 10, 100]
    dimensions: [deployment]
"""


def test_pushed_metrics_by_model_and_deployment_have_panels(tmp_path: Path) -> None:
    """A file whose metrics carry model and deployment (and have no unit): series by model on
    the overview (the built-in ones are on the LLM cost dashboard) and in the history, and the
    deployment tables and series include them."""
    path = tmp_path / "metrics.yaml"
    path.write_text(OTHER_FILE)
    try:
        pushed_metrics.install(str(path))
        files = generate.render()
    finally:
        catalogue.install_pushed(())
    for name in generate.DASHBOARDS:
        assert checks.problems(json.loads(files[name])) == [], name
    overview = json.loads(files["usage-overview.json"])
    panels = {p["title"]: p for p in checks.panels(overview)}
    assert "ocr_pages by model" in panels and "ocr_pages by deployment" in panels
    assert "queue_depth_seen by deployment" in panels
    assert (
        panels["queue_depth_seen: share by organization"]["fieldConfig"]["defaults"]["unit"]
        == "short"
    )  # no unit: no suffix
    tables = [q.text for q in checks.queries(overview) if q.panel == "By deployment"]
    assert any(f"{NS}_queue_depth_seen_sum" in t for t in tables)
    assert not any(
        "ocr_pages" in q.text for q in checks.queries(overview) if q.panel == "By workflow"
    )
    history = json.loads(files["usage-history.json"])
    titles = {p["title"] for p in checks.panels(history)}
    assert "ocr_pages by model" in titles
    by_deployment = [q.text for q in checks.queries(history) if q.panel == "By deployment"]
    assert any("'ocr_pages'" in t and "'queue_depth_seen'" in t for t in by_deployment)
    cost = json.loads(files["llm-cost.json"])
    assert not any("ocr_pages" in q.text for q in checks.queries(cost))
