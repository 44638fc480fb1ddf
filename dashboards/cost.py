"""LLM cost: cost over time per organization, cost and tokens per call, call mix, top spenders."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as md

from dashboard_metrics.core.catalogue import metric
from dashboard_metrics.dashboards.common import (
    Board,
    bargauge_panel,
    merged_columns,
    organization_variable,
    panel_unit,
    prometheus_variable,
    promql,
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


def build(namespace: str = DEFAULT_NAMESPACE) -> md.Dashboard:
    cost, tokens = metric("llm_usage"), metric("llm_tokens")
    calls, challenges = metric("llm_calls"), metric("challenges")
    summaries = metric("summarization_calls")
    usd, token_unit = panel_unit(cost), panel_unit(tokens)
    cost_sum, cost_count = value_series(cost, namespace), count_series(cost, namespace)
    token_sum, token_count = value_series(tokens, namespace), count_series(tokens, namespace)
    calls_total = value_series(calls, namespace)

    board = Board(
        UID,
        "dashboard-metrics / LLM cost",
        "LLM spend from the cost and token histograms of dashboard-metrics /metrics: cost over "
        "time per organization, cost and tokens per call (p50/p95/p99), the share of challenge "
        "and summarization calls, and the top organizations by cost.",
        [prometheus_variable(), organization_variable(org_selector(namespace))],
    )

    board.row("Spend")
    board.add(
        stat_panel(
            "LLM cost",
            "Total cost in USD of the LLM calls of the selected organizations over the range.",
            usd,
            [promql(selected(cost_sum, "$__range"), instant=True)],
        )
    )
    board.add(
        stat_panel(
            "LLM calls",
            "Number of LLM calls of the selected organizations over the range.",
            panel_unit(calls),
            [promql(selected(calls_total, "$__range"), instant=True)],
        )
    )
    board.add(
        stat_panel(
            "Average cost per call",
            "Cost divided by the number of calls over the range (the histogram's _sum / _count).",
            usd,
            [
                promql(
                    f"{selected(cost_sum, '$__range')} / {selected(cost_count, '$__range')}",
                    instant=True,
                )
            ],
        )
    )
    board.add(
        stat_panel(
            "Average tokens per call",
            "Total tokens divided by the number of calls over the range.",
            token_unit,
            [
                promql(
                    f"{selected(token_sum, '$__range')} / {selected(token_count, '$__range')}",
                    instant=True,
                )
            ],
        )
    )
    board.add(
        timeseries_panel(
            "Cost over time by organization",
            "USD spent per interval by each selected organization (stacked: the top is the total).",
            usd,
            [
                promql(
                    selected(cost_sum, "$__interval", by="organization"),
                    legend="{{organization}}",
                )
            ],
            stacked=True,
        )
    )
    board.add(
        timeseries_panel(
            "Hourly cost by organization",
            "USD per organization over the trailing hour (recording rule "
            f"{hourly_rule(cost, namespace)}, also used by the cost spike alert).",
            usd,
            [promql(f"{hourly_rule(cost, namespace)}{{{ORG}}}", legend="{{organization}}")],
        )
    )

    board.row("Per call")
    for title, buckets, sums, counts, unit, what in (
        ("Cost per call", bucket_series(cost, namespace), cost_sum, cost_count, usd, "USD"),
        (
            "Tokens per call",
            bucket_series(tokens, namespace),
            token_sum,
            token_count,
            token_unit,
            "tokens",
        ),
    ):
        board.add(
            timeseries_panel(
                title,
                f"{what} per LLM call: p50/p95/p99 estimated from the histogram buckets "
                "(linear interpolation inside a bucket) and the exact mean (_sum / _count).",
                unit,
                [
                    *(
                        promql(
                            quantile(q, buckets, "$__rate_interval"),
                            legend=f"p{round(q * 100)}",
                            ref=ref,
                        )
                        for q, ref in zip(QUANTILES, "ABC", strict=True)
                    ),
                    promql(
                        f"{selected(sums, '$__rate_interval')} / "
                        f"{selected(counts, '$__rate_interval')}",
                        legend="mean",
                        ref="D",
                    ),
                ],
            )
        )

    board.row("Call mix")
    shares = [
        (
            m,
            f"{selected(value_series(m, namespace), '$__range')} / "
            f"{selected(calls_total, '$__range')}",
        )
        for m in (challenges, summaries)
    ]
    board.add(
        stat_panel(
            "Share of challenge and summarization calls",
            "Challenge and summarization calls as a fraction of all LLM calls over the range.",
            "percentunit",
            [
                promql(expr, legend=m.name, ref=ref, instant=True)
                for (m, expr), ref in zip(shares, "AB", strict=True)
            ],
            width=8,
            height=8,
        )
    )
    board.add(
        timeseries_panel(
            "Call mix over time",
            "Challenge and summarization calls as a fraction of all LLM calls, per interval.",
            "percentunit",
            [
                promql(
                    f"{selected(value_series(m, namespace), '$__rate_interval')} / "
                    f"{selected(calls_total, '$__rate_interval')}",
                    legend=m.name,
                    ref=ref,
                )
                for m, ref in zip((challenges, summaries), "AB", strict=True)
            ],
            width=16,
        )
    )

    board.row("Organizations")
    board.add(
        bargauge_panel(
            "Top organizations by cost",
            "The ten selected organizations that spent the most over the range, in USD.",
            usd,
            [
                promql(
                    f"topk(10, {selected(cost_sum, '$__range', by='organization')})",
                    legend="{{organization}}",
                    instant=True,
                )
            ],
            width=10,
            height=10,
        )
    )
    columns = {"cost": usd, "calls": "short", "tokens": token_unit, "cost per call": usd}
    table_queries = [
        selected(cost_sum, "$__range", by="organization"),
        selected(cost_count, "$__range", by="organization"),
        selected(token_sum, "$__range", by="organization"),
        f"{selected(cost_sum, '$__range', by='organization')} / "
        f"{selected(cost_count, '$__range', by='organization')}",
    ]
    board.add(
        table_panel(
            "Cost per organization",
            "Per organization over the range: cost, calls, tokens and the mean cost per call.",
            usd,
            [
                promql(expr, legend=name, ref=ref, instant=True, fmt="table")
                for expr, name, ref in zip(table_queries, columns, "ABCD", strict=True)
            ],
            width=14,
            height=10,
            transformations=merged_columns(dict(zip("ABCD", columns, strict=True))),
            overrides=columns,
        )
    )
    return board.build()
