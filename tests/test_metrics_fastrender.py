"""The direct writer of the usage families equals prometheus_client's encoders byte for byte."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import choose_encoder

from dashboard_metrics.core.catalogue import CATALOGUE
from dashboard_metrics.exporter.metrics.config import MetricsConfig
from dashboard_metrics.exporter.metrics.usage import (
    EOF_LINE,
    Built,
    FamiliesCollector,
    families_from,
    select_series,
)

ACCEPT = {
    "text": "text/plain",
    "openmetrics": "application/openmetrics-text; version=1.0.0",
}
orgs = st.text(min_size=1, max_size=12)  # quotes, backslashes, newlines and unicode included
values = st.floats(min_value=0, max_value=1e12, allow_nan=False) | st.integers(0, 10**9).map(float)


@st.composite
def totals_rows(draw: st.DrawFn) -> list[tuple[str, str, float, int, str | None, int]]:
    rows = []
    for org in draw(st.lists(orgs, max_size=6, unique=True)):
        for metric in draw(st.lists(st.sampled_from(CATALOGUE), unique=True)):
            count = draw(st.integers(0, 10**6))
            buckets = None
            if metric.is_histogram:
                slots = len(metric.buckets) + 1
                if draw(st.booleans()):  # a stored layout that differs is skipped by both
                    slots += 1
                buckets = json.dumps(
                    draw(st.lists(st.integers(0, 1000), min_size=slots, max_size=slots))
                )
            rows.append(
                (org, metric.name, draw(values), count, buckets, draw(st.integers(0, count + 5)))
            )
    return rows


@settings(max_examples=200, deadline=None)
@given(
    rows=totals_rows(),
    namespace=st.sampled_from(["unstract", "acme_usage"]),
    top_n=st.integers(0, 3),
)
def test_fast_rendering_equals_prometheus_client(rows: list, namespace: str, top_n: int) -> None:
    config = MetricsConfig(namespace, allowlist=None, top_n=top_n, auth=None, version="test")
    series = select_series(rows, config)
    for accept in ACCEPT.values():
        encoder, content_type = choose_encoder(accept)
        reference = encoder(FamiliesCollector(families_from(series, namespace)))
        fast = Built(1, series, namespace).render(encoder, content_type)
        assert fast == reference.removesuffix(EOF_LINE)
