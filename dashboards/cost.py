"""LLM cost: cost over time per organization, cost and tokens per call, call mix, top spenders."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.models import dashboard as md

from dashboard_metrics.core.catalogue import Metric, metric
from dashboard_metrics.dashboards import breakdowns
from dashboard_metrics.dashboards.common import (
    AnyPanel,
    Sections,
    bargauge_panel,
    merged_columns,
    organization_variable,
    panel_unit,
    prometheus_variable,
    promql,
    render,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from dashboard_metrics.dashboards.promql import (
    DEFAULT_NAMESPACE,
    ORG,
    bucket_series,
    count_series,
    quantile,
    selected,
    value_series,
)
from dashboard_metrics.dashboards.rules import hourly_rule
from dashboard_metrics.dashboards.usage import org_selector

UID = "dm-llm-cost"
QUANTILES = (0.5, 0.95, 0.99)


COST, TOKENS, CALLS = metric("llm_usage"), metric("llm_tokens"), metric("llm_calls")
MIX = (metric("challenges"), metric("summarization_calls"))


@dataclass(frozen=True)
class Series:
    """The cost and token histograms and the call counters, as series of one namespace."""

    namespace: str
    cost: Metric = COST
    tokens: Metric = TOKENS
    calls: Metric = CALLS
    mix: tuple[Metric, ...] = MIX

    @property
    def usd(self) -> str:
        return panel_unit(self.cost)

    @property
    def token_unit(self) -> str:
        return panel_unit(self.tokens)

    def sum(self, m: Metric) -> str:
        return value_series(m, self.namespace)

    def count(self, m: Metric) -> str:
        return count_series(m, self.namespace)

    def per_call(self, m: Metric, window: str, by: str = "") -> str:
        """The mean per call over ``window``: the histogram's _sum / _count."""
        return f"{selected(self.sum(m), window, by=by)} / {selected(self.count(m), window, by=by)}"

    def share(self, m: Metric, window: str) -> str:
        """``m``'s calls as a fraction of all LLM calls."""
        return f"{selected(self.sum(m), window)} / {selected(self.sum(self.calls), window)}"


def build(namespace: str = DEFAULT_NAMESPACE) -> md.Dashboard:
    return render(
        UID,
        "dashboard-metrics / LLM cost",
        "LLM spend from the cost and token histograms of dashboard-metrics /metrics: cost over "
        "time per organization, cost and tokens per call (p50/p95/p99), the share of challenge "
        "and summarization calls, the top organizations by cost, and cost and tokens by model.",
        [prometheus_variable(), organization_variable(org_selector(namespace))],
        sections(Series(namespace)),
    )


def sections(s: Series) -> Sections:
    return {
        "Spend": spend(s),
        "Per call": [
            per_call(s, "Cost per call", s.cost, s.usd, "USD"),
            per_call(s, "Tokens per call", s.tokens, s.token_unit, "tokens"),
        ],
        "Call mix": call_mix(s),
        "By model": breakdowns.by_model(s.namespace),
        "Organizations": organizations(s),
    }


def spend(s: Series) -> list[AnyPanel]:
    cost = s.sum(s.cost)
    return [
        stat_panel(
            "LLM cost",
            "Total cost in USD of the LLM calls of the selected organizations over the range.",
            s.usd,
            [promql(selected(cost, "$__range"), instant=True)],
        ),
        stat_panel(
            "LLM calls",
            "Number of LLM calls of the selected organizations over the range.",
            panel_unit(s.calls),
            [promql(selected(s.sum(s.calls), "$__range"), instant=True)],
        ),
        stat_panel(
            "Average cost per call",
            "Cost divided by the number of calls over the range (the histogram's _sum / _count).",
            s.usd,
            [promql(s.per_call(s.cost, "$__range"), instant=True)],
        ),
        stat_panel(
            "Average tokens per call",
            "Total tokens divided by the number of calls over the range.",
            s.token_unit,
            [promql(s.per_call(s.tokens, "$__range"), instant=True)],
        ),
        timeseries_panel(
            "Cost over time by organization",
            "USD spent per interval by each selected organization (stacked: the top is the total).",
            s.usd,
            [promql(selected(cost, "$__interval", by="organization"), legend="{{organization}}")],
            stacked=True,
        ),
        timeseries_panel(
            "Hourly cost by organization",
            "USD per organization over the trailing hour (recording rule "
            f"{hourly_rule(s.cost, s.namespace)}, also used by the cost spike alert).",
            s.usd,
            [promql(f"{hourly_rule(s.cost, s.namespace)}{{{ORG}}}", legend="{{organization}}")],
        ),
    ]


def per_call(s: Series, title: str, m: Metric, unit: str, what: str) -> AnyPanel:
    """Quantiles of a histogram per call, and its exact mean."""
    buckets = bucket_series(m, s.namespace)
    quantiles = [
        promql(quantile(q, buckets, "$__rate_interval"), legend=f"p{round(q * 100)}", ref=ref)
        for q, ref in zip(QUANTILES, "ABC", strict=True)
    ]
    return timeseries_panel(
        title,
        f"{what} per LLM call: p50/p95/p99 estimated from the histogram buckets "
        "(linear interpolation inside a bucket) and the exact mean (_sum / _count).",
        unit,
        [*quantiles, promql(s.per_call(m, "$__rate_interval"), legend="mean", ref="D")],
    )


def call_mix(s: Series) -> list[AnyPanel]:
    return [
        stat_panel(
            "Share of challenge and summarization calls",
            "Challenge and summarization calls as a fraction of all LLM calls over the range.",
            "percentunit",
            [
                promql(s.share(m, "$__range"), legend=m.name, ref=ref, instant=True)
                for m, ref in zip(s.mix, "AB", strict=True)
            ],
            width=8,
            height=8,
        ),
        timeseries_panel(
            "Call mix over time",
            "Challenge and summarization calls as a fraction of all LLM calls, per interval.",
            "percentunit",
            [
                promql(s.share(m, "$__rate_interval"), legend=m.name, ref=ref)
                for m, ref in zip(s.mix, "AB", strict=True)
            ],
            width=16,
        ),
    ]


def organizations(s: Series) -> list[AnyPanel]:
    columns = {"cost": s.usd, "calls": "short", "tokens": s.token_unit, "cost per call": s.usd}
    table_queries = [
        selected(s.sum(s.cost), "$__range", by="organization"),
        selected(s.count(s.cost), "$__range", by="organization"),
        selected(s.sum(s.tokens), "$__range", by="organization"),
        s.per_call(s.cost, "$__range", by="organization"),
    ]
    return [
        bargauge_panel(
            "Top organizations by cost",
            "The ten selected organizations that spent the most over the range, in USD.",
            s.usd,
            [
                promql(
                    f"topk(10, {selected(s.sum(s.cost), '$__range', by='organization')})",
                    legend="{{organization}}",
                    instant=True,
                )
            ],
            width=10,
            height=10,
        ),
        table_panel(
            "Cost per organization",
            "Per organization over the range: cost, calls, tokens and the mean cost per call.",
            s.usd,
            [
                promql(expr, legend=name, ref=ref, instant=True, fmt="table")
                for expr, name, ref in zip(table_queries, columns, "ABCD", strict=True)
            ],
            width=14,
            height=10,
            transformations=merged_columns(dict(zip("ABCD", columns, strict=True))),
            overrides=columns,
        ),
    ]
