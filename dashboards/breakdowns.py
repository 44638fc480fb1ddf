"""Breakdown panels on the Prometheus dashboards: LLM cost and tokens by model, runs by workflow
and by deployment, and the pushed metrics (DASHBOARD_METRICS_METRICS_FILE) by the dimensions each
carries.

They read the `model`, `workflow` and `deployment` labels that /metrics adds to the usage families
when DASHBOARD_METRICS_METRICS_DIMENSIONS asks for them (opt-in: without them these panels are
empty, and the Usage history dashboard has the same breakdowns from the rollup tables). Every
expression is replica-safe as the organization panels are (`promql.selected`).
"""

from __future__ import annotations

from collections.abc import Sequence

from dashboard_metrics.core.catalogue import Dimension, Metric, metric, pushed_metrics
from dashboard_metrics.dashboards.common import (
    AnyPanel,
    merged_columns,
    panel_unit,
    promql,
    ref_ids,
    table_panel,
    timeseries_panel,
)
from dashboard_metrics.dashboards.promql import DEFAULT_NAMESPACE, named, selected, value_series

OPT_IN = "Needs DASHBOARD_METRICS_METRICS_DIMENSIONS={dimension} on serve (else empty)."
BY_MODEL = (metric("llm_usage"), metric("llm_tokens"))
BY_WORKFLOW = (metric("documents_processed"), metric("failed_pages"), metric("prompt_executions"))
BY_DEPLOYMENT = (metric("deployed_api_requests"), metric("etl_pipeline_executions"))


def with_pushed(builtins: Sequence[Metric], dimension: Dimension) -> tuple[Metric, ...]:
    """``builtins`` and, after them, the installed pushed metrics kept by ``dimension`` (read at
    call time: the metrics file is installed after import)."""
    return (*builtins, *(m for m in pushed_metrics() if dimension in m.dimensions))


def carried(metrics: Sequence[Metric], dimension: Dimension) -> Sequence[Metric]:
    """The metrics, each of which must carry ``dimension`` (the catalogue decides)."""
    missing = [m.name for m in metrics if dimension not in m.dimensions]
    if missing:
        raise ValueError(f"{', '.join(missing)} not kept by {dimension}")
    return metrics


def _model_panel(m: Metric, namespace: str, what: str) -> AnyPanel:
    """One stacked series per model of ``m``; ``what`` says what a point is."""
    return timeseries_panel(
        f"{m.name} by model",
        f"Per interval and {what}, selected organizations summed. Stacked: the top is the total. "
        + OPT_IN.format(dimension="model"),
        panel_unit(m),
        [
            promql(
                selected(value_series(m, namespace), "$__interval", by="model"),
                legend="{{model}}",
            )
        ],
        stacked=True,
    )


def by_model(namespace: str = DEFAULT_NAMESPACE) -> list[AnyPanel]:
    """One stacked series per model for each metric (cost, tokens)."""
    return [
        _model_panel(
            m, namespace, f"LLM model, the {m.unit} of the LLM calls (the histogram's sum)"
        )
        for m in carried(BY_MODEL, Dimension.MODEL)
    ]


def pushed_by_model(namespace: str = DEFAULT_NAMESPACE) -> list[AnyPanel]:
    """One stacked series per model for each pushed metric kept by model (none without a
    metrics file)."""
    return [
        _model_panel(m, namespace, f"model, {m.help[0].lower()}{m.help[1:]} ({m.unit or 'value'})")
        for m in with_pushed((), Dimension.MODEL)
    ]


def named_table(
    dimension: Dimension, metrics: Sequence[Metric], namespace: str, title: str, what: str
) -> AnyPanel:
    """A row per organization and ``dimension`` value, with its names, a column per metric."""
    refs = ref_ids(len(metrics))
    by = f"organization, {dimension}"

    def over_range(m: Metric) -> str:
        return named(selected(value_series(m, namespace), "$__range", by=by), dimension, namespace)

    return table_panel(
        title,
        f"Per {what} over the selected range: "
        + ", ".join(f"{m.name} ({m.unit})" if m.unit else m.name for m in metrics)
        + f". Names from {namespace}_{dimension}_info. "
        + OPT_IN.format(dimension=dimension),
        "short",
        [
            promql(
                over_range(m),
                legend=m.name,
                ref=ref,
                instant=True,
                fmt="table",
            )
            for m, ref in zip(carried(metrics, dimension), refs, strict=True)
        ],
        transformations=merged_columns({ref: m.name for m, ref in zip(metrics, refs, strict=True)}),
        overrides={m.name: panel_unit(m) for m in metrics},
    )


def by_workflow(namespace: str = DEFAULT_NAMESPACE) -> list[AnyPanel]:
    return [
        named_table(
            Dimension.WORKFLOW,
            with_pushed(BY_WORKFLOW, Dimension.WORKFLOW),
            namespace,
            "By workflow",
            "workflow",
        ),
    ]


def by_deployment(namespace: str = DEFAULT_NAMESPACE) -> list[AnyPanel]:
    """A table with names and types, and a stacked series per deployment for each metric."""
    metrics = with_pushed(BY_DEPLOYMENT, Dimension.DEPLOYMENT)
    series = [
        timeseries_panel(
            f"{m.name} by deployment",
            f"Per interval and deployment, {m.help[0].lower()}{m.help[1:]}. Stacked: the top "
            "is the total. " + OPT_IN.format(dimension="deployment"),
            panel_unit(m),
            [
                promql(
                    named(
                        selected(
                            value_series(m, namespace),
                            "$__interval",
                            by="organization, deployment",
                        ),
                        Dimension.DEPLOYMENT,
                        namespace,
                    ),
                    legend="{{deployment_name}} {{deployment}}",
                )
            ],
            stacked=True,
        )
        for m in carried(metrics, Dimension.DEPLOYMENT)
    ]
    table = named_table(
        Dimension.DEPLOYMENT,
        metrics,
        namespace,
        "By deployment",
        "API deployment or pipeline",
    )
    return [table, *series]
