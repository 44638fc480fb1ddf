"""Shared pieces of every dashboard: data sources, variables, panel factories, layout, encoding.

Every panel gets a unique id, a description, a unit and a data source here, so the builders
cannot forget them; legends are always shown where the panel type has one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import bargauge, piechart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common as mc
from grafana_foundation_sdk.models import dashboard as md
from grafana_foundation_sdk.models.common import BigValueTextMode, DataSourceRef
from grafana_foundation_sdk.models.piechart import PieChartLegendValues, PieChartType
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboard_metrics.core.catalogue import Metric

PROMETHEUS_TYPE = "prometheus"
POSTGRES_TYPE = "grafana-postgresql-datasource"
PROMETHEUS = DataSourceRef(type_val=PROMETHEUS_TYPE, uid="${datasource}")
ROLLUPS = DataSourceRef(type_val=POSTGRES_TYPE, uid="${rollups}")
TAGS = ["dashboard-metrics"]

AnyPanel = stat.Panel | timeseries.Panel | table.Panel | bargauge.Panel | piechart.Panel | db.Panel
# A dashboard as a table of panels: each row's title with its panels, in order.
Sections = dict[str, list[AnyPanel]]


def panel_unit(metric: Metric) -> str:
    """Grafana unit of a metric's values: its own, else '<n> pages'-style suffixes."""
    if metric.grafana_unit != "short":
        return metric.grafana_unit
    return f"suffix: {metric.unit}" if metric.is_histogram and metric.unit else "short"


# -- variables --------------------------------------------------------------------------------


def prometheus_variable() -> db.DatasourceVariable:
    return (
        db.DatasourceVariable("datasource")
        .label("Prometheus")
        .description("The Prometheus that scrapes dashboard-metrics serve")
        .type(PROMETHEUS_TYPE)
    )


def rollups_variable() -> db.DatasourceVariable:
    return (
        db.DatasourceVariable("rollups")
        .label("Rollup database")
        .description("PostgreSQL holding the event_metrics_hourly/daily/monthly rollup tables")
        .type(POSTGRES_TYPE)
    )


def organization_variable(series: str) -> db.QueryVariable:
    """Multi-select organizations from the label of a usage family, with All (= every one)."""
    query = f"label_values({series}, organization)"
    return (
        db.QueryVariable("organization")
        .label("Organization")
        .description("Organizations (string ids); All selects every one")
        .datasource(PROMETHEUS)
        .query({"query": query, "refId": "organization", "qryType": 1})
        .definition(query)
        .refresh(md.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(md.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(md.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


# -- queries ----------------------------------------------------------------------------------


def promql(
    expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False, fmt: str = ""
) -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(PROMETHEUS)
    query = query.instant() if instant else query.range()
    if fmt:
        query = query.format(PromQueryFormat(fmt))
    return query


def ref_ids(count: int) -> list[str]:
    return [chr(ord("A") + i) if i < 26 else f"Q{i}" for i in range(count)]


# -- panels -----------------------------------------------------------------------------------


def _common(
    panel: Any,
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Builder[Dataquery]],
    datasource: DataSourceRef,
    width: int,
    height: int,
) -> Any:
    panel = (
        panel.title(title)
        .description(description)
        .unit(unit)
        .datasource(datasource)
        .span(width)
        .height(height)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def legend(table_mode: bool = False) -> cb.VizLegendOptions:
    options = (
        cb.VizLegendOptions()
        .show_legend(True)
        .is_visible(True)
        .placement(mc.LegendPlacement.BOTTOM if not table_mode else mc.LegendPlacement.RIGHT)
        .display_mode(mc.LegendDisplayMode.TABLE if table_mode else mc.LegendDisplayMode.LIST)
    )
    return options.calcs(["sum", "lastNotNull"] if table_mode else [])


def reduce(calc: str = "lastNotNull") -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs([calc]).values(False)


def stat_panel(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Builder[Dataquery]],
    datasource: DataSourceRef = PROMETHEUS,
    width: int = 6,
    height: int = 4,
    mappings: list[md.ValueMapping] | None = None,
    text_mode: BigValueTextMode | None = None,
) -> stat.Panel:
    panel = stat.Panel().reduce_options(reduce()).graph_mode(mc.BigValueGraphMode.NONE)
    panel = panel.color_mode(mc.BigValueColorMode.VALUE).no_value("0")
    if mappings:
        panel = panel.mappings(mappings)
    if text_mode is not None:
        panel = panel.text_mode(text_mode)
    return _common(panel, title, description, unit, targets, datasource, width, height)


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Builder[Dataquery]],
    datasource: DataSourceRef = PROMETHEUS,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    bars: bool = False,
) -> timeseries.Panel:
    panel = timeseries.Panel().legend(legend(table_mode=stacked)).fill_opacity(15)
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(mc.StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(mc.GraphDrawStyle.BARS).fill_opacity(60)
    panel = panel.tooltip(cb.VizTooltipOptions().mode(mc.TooltipDisplayMode.MULTI))
    return _common(panel, title, description, unit, targets, datasource, width, height)


def bargauge_panel(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Builder[Dataquery]],
    datasource: DataSourceRef = PROMETHEUS,
    width: int = 8,
    height: int = 8,
    query_units: dict[str, str] | None = None,
) -> bargauge.Panel:
    """``query_units``: a unit per query (ref -> unit), for bars of different units."""
    panel = (
        bargauge.Panel()
        .legend(legend())
        .reduce_options(reduce())
        .orientation(mc.VizOrientation.HORIZONTAL)
        .display_mode(mc.BarGaugeDisplayMode.GRADIENT)
        .no_value("0")
    )
    for ref, ref_unit in (query_units or {}).items():
        panel = panel.override_by_query(ref, [md.DynamicConfigValue("unit", ref_unit)])
    return _common(panel, title, description, unit, targets, datasource, width, height)


def piechart_panel(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Builder[Dataquery]],
    datasource: DataSourceRef = PROMETHEUS,
    width: int = 8,
    height: int = 8,
) -> piechart.Panel:
    panel = (
        piechart.Panel()
        .pie_type(PieChartType.DONUT)
        .reduce_options(reduce())
        .legend(
            piechart.PieChartLegendOptions()
            .show_legend(True)
            .is_visible(True)
            .display_mode(mc.LegendDisplayMode.TABLE)
            .placement(mc.LegendPlacement.RIGHT)
            .values([PieChartLegendValues.VALUE, PieChartLegendValues.PERCENT])
        )
    )
    return _common(panel, title, description, unit, targets, datasource, width, height)


def table_panel(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Builder[Dataquery]],
    datasource: DataSourceRef = PROMETHEUS,
    width: int = 24,
    height: int = 9,
    transformations: list[md.DataTransformerConfig] | None = None,
    overrides: dict[str, str] | None = None,
) -> table.Panel:
    panel = table.Panel().show_header(True).filterable(True).cell_options(mc.TableAutoCellOptions())
    for transformation in transformations or []:
        panel = panel.with_transformation(transformation)
    for field_name, field_unit in (overrides or {}).items():
        panel = panel.override_by_name(field_name, [md.DynamicConfigValue("unit", field_unit)])
    return _common(panel, title, description, unit, targets, datasource, width, height)


def transformation(kind: str, options: dict[str, Any] | None = None) -> md.DataTransformerConfig:
    return md.DataTransformerConfig(id_val=kind, options=options or {})


def merged_columns(names: dict[str, str]) -> list[md.DataTransformerConfig]:
    """Instant table queries merged into one row per label set, each query's value column
    named (query ref -> column name)."""
    return [
        transformation("merge"),
        transformation(
            "organize",
            {
                "excludeByName": {"Time": True},
                "renameByName": {f"Value #{ref}": name for ref, name in names.items()},
            },
        ),
    ]


def up_down() -> list[md.ValueMapping]:
    return [
        md.ValueMap(
            options={
                "0": md.ValueMappingResult(text="DOWN", color="red", index=0),
                "1": md.ValueMappingResult(text="UP", color="green", index=1),
            }
        )
    ]


# -- the dashboard ----------------------------------------------------------------------------


class Board:
    """A dashboard under construction: panel ids are allocated in order, 1, 2, 3, ..."""

    def __init__(
        self,
        uid: str,
        title: str,
        description: str,
        variables: Sequence[Builder[md.VariableModel]],
        time_from: str = "now-7d",
    ) -> None:
        self._next_id = 0
        self.builder = (
            db.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(TAGS)
            .timezone("utc")
            .time(time_from, "now")
            .refresh("1m")
            .editable()
            .tooltip(md.DashboardCursorSync.CROSSHAIR)
            .variables(list(variables))
        )

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def row(self, title: str) -> None:
        self.builder = self.builder.with_row(db.Row(title).id(self._id()))

    def add(self, panel: AnyPanel) -> None:
        self.builder = self.builder.with_panel(panel.id(self._id()))

    def build(self) -> md.Dashboard:
        return self.builder.build()


def render(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[Builder[md.VariableModel]],
    sections: Sections,
    time_from: str = "now-7d",
) -> md.Dashboard:
    """A dashboard from its table of panels: a row per section, its panels under it."""
    board = Board(uid, title, description, variables, time_from)
    for row, panels in sections.items():
        board.row(row)
        for panel in panels:
            board.add(panel)
    return board.build()


PLUGIN_NAMES = {PROMETHEUS_TYPE: "Prometheus", POSTGRES_TYPE: "PostgreSQL"}
PANEL_NAMES = {
    "bargauge": "Bar gauge",
    "piechart": "Pie chart",
    "stat": "Stat",
    "table": "Table",
    "timeseries": "Time series",
}
GRAFANA_VERSION = "12.0.0"
# The SDK writes these on every variable; Grafana's schema has them on interval variables only.
INTERVAL_ONLY = ("auto", "auto_count", "auto_min")


def input_name(variable: str) -> str:
    """The import input that a data source variable defaults to (`DS_DATASOURCE`, ...)."""
    return f"DS_{variable.upper()}"


def for_import(model: dict[str, Any]) -> dict[str, Any]:
    """The dashboard as Grafana's "export for sharing externally" writes it: `__inputs` (the
    import screen asks for each data source, and each data source variable defaults to the
    answer), `__requires` (the Grafana version and plugins it needs), and only the keys the
    schema knows on each variable. Provisioned copies work too: a variable whose default names
    no data source falls back to the default one of its type."""
    inputs: list[dict[str, str]] = []
    requires = [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION}]
    for variable in model["templating"]["list"]:
        if variable["type"] != "interval":
            for key in INTERVAL_ONLY:
                variable.pop(key, None)
        if variable["type"] == "datasource":
            plugin, name = variable["query"], input_name(variable["name"])
            inputs.append(
                {
                    "name": name,
                    "label": variable["label"],
                    "description": variable["description"],
                    "type": "datasource",
                    "pluginId": plugin,
                    "pluginName": PLUGIN_NAMES[plugin],
                }
            )
            variable["current"] = {
                "selected": True,
                "text": f"${{{name}}}",
                "value": f"${{{name}}}",
            }
            requires.append(
                {"type": "datasource", "id": plugin, "name": PLUGIN_NAMES[plugin], "version": ""}
            )
    kinds = sorted({p["type"] for p in model["panels"] if p["type"] != "row"})
    requires += [{"type": "panel", "id": k, "name": PANEL_NAMES[k], "version": ""} for k in kinds]
    return {"__inputs": inputs, "__requires": requires, **model}


def encode(dashboard: md.Dashboard) -> str:
    model = json.loads(JSONEncoder(sort_keys=True, indent=2).encode(dashboard))
    return json.dumps(for_import(model), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
