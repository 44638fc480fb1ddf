"""/metrics: the service's own families, gzip, auth and the cardinality controls."""

from __future__ import annotations

import asyncio
import base64
import gzip

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from dashboard_metrics.core import state
from dashboard_metrics.core.setting_types import ConfigError
from dashboard_metrics.exporter.metrics.config import MetricsConfig
from dashboard_metrics.exporter.metrics.handler import USAGE_CACHE, prewarm_once
from tests.harness import Harness
from tests.test_metrics_helpers import NS, Samples, parse, populate, scrape, serving, value

P = "dashboard_metrics"


async def test_service_metrics_follow_the_aggregator_and_requests(h: Harness) -> None:
    a = h.org()
    populate(h, [a])
    first = h.aggregator.tick()
    h.clock.advance(seconds=30)
    second = h.aggregator.tick()
    h.clock.advance(seconds=45)
    async with serving(h) as client:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/no/such/path")).status == 404
        samples = parse(await scrape(client))
        assert value(samples, f"{P}_ticks_total") == 2
        assert value(samples, f"{P}_tick_failures_total") == 0
        assert value(samples, f"{P}_tick_duration_seconds_count") == 2
        assert value(samples, f"{P}_tick_duration_seconds_sum") == pytest.approx(
            first.duration_seconds + second.duration_seconds, abs=1e-5
        )
        assert value(samples, f"{P}_tick_duration_seconds_bucket", le="+Inf") == 2
        for tier in ("hourly", "daily", "monthly"):
            assert value(samples, f"{P}_rows_written_total", tier=tier) == (
                first.written[tier] + second.written[tier]
            )
        assert value(samples, f"{P}_last_successful_tick_timestamp_seconds") == (
            second.started_at.timestamp()
        )
        assert value(samples, f"{P}_rollup_lag_seconds") == 45
        assert value(samples, f"{P}_database_up") == 1
        assert value(samples, f"{P}_build_info", version="0.1.0") == 1
        for result in ("hit", "miss", "error"):
            assert value(samples, f"{P}_cache_requests_total", result=result) == 0
        hist = f"{P}_http_request_duration_seconds_count"
        assert value(samples, hist, route="/healthz", method="GET", status_class="2xx") == 1
        assert value(samples, hist, route="unmatched", method="GET", status_class="4xx") == 1
        # The scrape itself is timed once it has answered.
        again = parse(await scrape(client))
        assert value(again, hist, route="/metrics", method="GET", status_class="2xx") == 1


async def test_gzip_when_accepted(h: Harness) -> None:
    populate(h, [h.org()])
    h.aggregator.tick()
    async with serving(h) as client:
        response = await client.get(
            "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
        )
        assert response.headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(await response.read()).decode()
        plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers
    assert f"{NS}_llm_calls_total" in body


@pytest.mark.parametrize(
    ("setting", "good", "bad"),
    [
        ("bearer:s3cret", "Bearer s3cret", "Bearer s3cres"),
        (
            "basic:prom:pa:ss",
            "Basic " + base64.b64encode(b"prom:pa:ss").decode(),
            "Basic " + base64.b64encode(b"prom:pass").decode(),
        ),
    ],
)
async def test_auth(h: Harness, setting: str, good: str, bad: str) -> None:
    async with serving(h, metrics_auth=setting) as client:
        for headers in ({}, {"Authorization": bad}, {"Authorization": "Basic !!"}):
            response = await client.get("/metrics", headers=headers)
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].endswith('realm="metrics"')
        assert (await client.get("/metrics", headers={"Authorization": good})).status == 200
        assert (await client.get("/healthz")).status == 200  # only /metrics is guarded


def test_invalid_settings_are_refused(h: Harness) -> None:
    for overrides in (
        {"metrics_auth": "s3cret"},
        {"metrics_auth": "basic:s3cret"},
        {"metrics_auth": "bearer:"},
        {"namespace": "a-b"},
    ):
        with pytest.raises(ConfigError) as info:
            MetricsConfig.from_settings(h.settings.with_overrides(**overrides))
        assert "s3cret" not in str(info.value)  # a secret is never echoed


async def test_allowlist_top_n_and_namespace(h: Harness) -> None:
    quiet, busy, busier = h.org(), h.org(), h.org()
    populate(h, [busy], seed=1)
    populate(h, [busier], seed=1, months=(1, 2, 3))
    populate(h, [busier], seed=2, months=(2,))
    quiet.usage(h.clock().replace(day=1))
    h.aggregator.tick()

    def orgs(samples: Samples, name: str) -> set[str]:
        return {dict(labels)["organization"] for (n, labels) in samples if n == name}

    async with serving(h, metrics_top_n=2) as client:
        samples = parse(await scrape(client))
    assert orgs(samples, f"{NS}_llm_calls_total") == {busy.string_id, busier.string_id}
    async with serving(
        h, metrics_top_n=1, metrics_org_allowlist=f"{quiet.string_id}, {busy.string_id}"
    ) as client:
        samples = parse(await scrape(client))
    assert orgs(samples, f"{NS}_llm_calls_total") == {busy.string_id}
    async with serving(h, namespace="acme") as client:
        samples = parse(await scrape(client))
    assert orgs(samples, "acme_llm_calls_total") == {
        quiet.string_id,
        busy.string_id,
        busier.string_id,
    }
    assert orgs(samples, "acme_llm_call_cost_usd_count") == orgs(samples, "acme_llm_calls_total")


async def test_concurrent_scrapes_and_replicas_agree(h: Harness) -> None:
    a, b = h.org(), h.org()
    populate(h, [a, b])
    h.aggregator.tick()
    with h.rollup.begin() as conn:  # as if another aggregator process had failed twice
        state.put(conn, {state.TICK_FAILURES_TOTAL: 2}, h.clock())

    def usage(text: str) -> Samples:
        return {k: v for k, v in parse(text).items() if k[0].startswith(NS)}

    async with serving(h) as one, serving(h) as two:
        texts = await asyncio.gather(*(scrape(c) for c in (one, two) for _ in range(4)))
        first = usage(texts[0])
        assert first and all(usage(text) == first for text in texts)
        assert value(parse(texts[-1]), f"{P}_tick_failures_total") == 2
        # A tick moves both replicas to the same new values.
        h.clock.advance(minutes=1)
        a.usage(h.clock())
        h.aggregator.tick()
        moved = [usage(await scrape(c)) for c in (one, two)]
    assert moved[0] == moved[1] != first
    key = (f"{NS}_llm_calls_total", (("organization", a.string_id),))
    assert moved[0][key] == first[key] + 1


async def test_a_new_totals_version_is_rendered_before_the_next_scrape(h: Harness) -> None:
    a = h.org()
    populate(h, [a])
    h.aggregator.tick()
    async with serving(h) as client:
        app = client.app
        assert app is not None
        await prewarm_once(app)  # nobody asked for any format yet: nothing to do
        before = await scrape(client, Accept="application/openmetrics-text; version=1.0.0")
        h.clock.advance(minutes=1)
        a.usage(h.clock())
        h.aggregator.tick()
        await prewarm_once(app)
        built = app[USAGE_CACHE]._built
        assert built is not None and len(built.rendered) == 1  # the new version, rendered
        after = await scrape(client, Accept="application/openmetrics-text; version=1.0.0")
        assert app[USAGE_CACHE]._built is built  # the scrape reused it
    key = (f"{NS}_llm_calls_total", (("organization", a.string_id),))
    assert parse_om(after)[key] == parse_om(before)[key] + 1


def parse_om(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parse_openmetrics(text)
        for s in family.samples
    }
