"""The generated dashboards: up to date, structurally sound, derived from the catalogue."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboard_metrics.cli.main import main as cli_main
from dashboard_metrics.core.catalogue import CATALOGUE, MetricType, metric
from dashboard_metrics.dashboards import checks, generate, history, usage
from dashboard_metrics.dashboards.common import encode
from dashboard_metrics.dashboards.sql import SqlQuery, register

GENERATED = Path(generate.__file__).resolve().parent / "generated"


def load(name: str) -> dict[str, Any]:
    return json.loads((GENERATED / name).read_text())  # type: ignore[no-any-return]


ALL = {name: load(name) for name in generate.DASHBOARDS}


def test_generated_files_are_up_to_date(tmp_path: Path) -> None:
    assert generate.main(str(tmp_path)) == 0
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(Path(name) for name in generate.render())
    for relative in written:
        assert (GENERATED / relative).read_bytes() == (tmp_path / relative).read_bytes(), (
            f"{relative} is out of date: run `dashboard-metrics dashboards`"
        )


def test_check_mode_reports_differences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["dashboards", "--out", str(tmp_path), "--check"]) == 1
    assert cli_main(["dashboards", "--out", str(tmp_path)]) == 0
    assert cli_main(["dashboards", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "llm-cost.json").write_text("{}\n")
    assert cli_main(["dashboards", "--out", str(tmp_path), "--check"]) == 1
    assert "llm-cost.json" in capsys.readouterr().err
    assert generate.main(None, check=True) == 0  # the committed files


def test_generation_is_deterministic() -> None:
    assert generate.render() == generate.render()


def test_uids_are_unique_and_stable() -> None:
    uids = [d["uid"] for d in ALL.values()]
    assert len(set(uids)) == len(uids)
    assert set(uids) == {
        "dm-usage-overview",
        "dm-llm-cost",
        "dm-pipeline-health",
        "dm-usage-history",
    }


@pytest.mark.parametrize("name", sorted(ALL))
def test_structure(name: str) -> None:
    dashboard = ALL[name]
    assert checks.problems(dashboard) == []
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["title"].startswith("dashboard-metrics / ")
    positions = [p["gridPos"] for p in checks.panels(dashboard)]
    assert all(p["x"] >= 0 and p["x"] + p["w"] <= 24 for p in positions)


def test_structure_check_catches_problems() -> None:
    broken = json.loads(json.dumps(ALL["llm-cost.json"]))
    panel = broken["panels"][1]
    panel["description"] = ""
    panel["fieldConfig"]["defaults"].pop("unit")
    panel["targets"][0]["expr"] += " + $nope"
    broken["panels"][2]["id"] = panel["id"]
    found = "\n".join(checks.problems(broken))
    for needle in ("no description", "no unit", "$nope is not defined", "duplicate panel ids"):
        assert needle in found


def test_variables() -> None:
    for name in ("usage-overview.json", "llm-cost.json"):
        variables = {v["name"]: v for v in ALL[name]["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        org = variables["organization"]
        assert org["multi"] and org["includeAll"]
        assert org["definition"].startswith("label_values(")
        assert org["definition"].endswith(", organization)")
    history_vars = {v["name"]: v for v in ALL["usage-history.json"]["templating"]["list"]}
    assert history_vars["rollups"]["query"] == "grafana-postgresql-datasource"
    assert history_vars["organization"]["multi"] and history_vars["organization"]["includeAll"]


def test_units_match_the_catalogue() -> None:
    units = {
        p["title"]: p["fieldConfig"]["defaults"]["unit"]
        for p in checks.panels(ALL["usage-overview.json"])
        if p["type"] == "stat"
    }
    assert units["Llm usage"] == "currencyUSD"
    assert units["Pages processed"] == "suffix: pages"
    assert units["Llm tokens"] == "suffix: tokens"
    health = {p["title"]: p for p in checks.panels(ALL["pipeline-health.json"])}
    assert health["Tick duration"]["fieldConfig"]["defaults"]["unit"] == "s"


def test_every_catalogue_metric_has_its_panels() -> None:
    exprs = "\n".join(q.text for q in checks.queries(ALL["usage-overview.json"]))
    sqls = "\n".join(q.text for q in checks.queries(ALL["usage-history.json"]))
    for entry in CATALOGUE:
        assert f"unstract_{entry.prometheus_name}" in exprs
        assert f"metric_name = '{entry.name}'" in sqls


def test_a_new_metric_appears_without_touching_the_builders() -> None:
    extra = replace(
        metric("llm_calls"),
        name="ocr_calls",
        prometheus_name="ocr_calls_total",
        type=MetricType.COUNTER,
    )
    metrics = (*CATALOGUE, extra)
    overview = json.loads(encode(usage.build(metrics=metrics)))
    assert checks.problems(overview) == []
    assert any("unstract_ocr_calls_total" in q.text for q in checks.queries(overview))
    before = len(list(checks.panels(ALL["usage-overview.json"])))
    assert len(list(checks.panels(overview))) == before + 3  # stat, trend, share by org
    past = json.loads(encode(history.build(metrics=metrics)))
    assert any("'ocr_calls'" in q.text for q in checks.queries(past))


def test_queries_use_the_right_data_source() -> None:
    for name, dashboard in ALL.items():
        for panel in checks.panels(dashboard):
            for target in panel.get("targets", []):
                kind = target["datasource"]["type"]
                if name == "usage-history.json":
                    assert kind == "grafana-postgresql-datasource"
                    assert target["rawQuery"] and target["format"] in {"table", "time_series"}
                else:
                    assert kind == "prometheus"


def test_sql_variant_round_trips() -> None:
    from grafana_foundation_sdk.cog.runtime import dataquery_from_json

    register()
    panel = next(p for p in checks.panels(ALL["usage-history.json"]) if p.get("targets"))
    decoded = dataquery_from_json(panel["targets"][0], "")
    assert isinstance(decoded, SqlQuery)
    assert decoded.to_json() == panel["targets"][0]


def test_kubernetes_wrappers_hold_the_generated_files() -> None:
    maps = list(yaml.safe_load_all((GENERATED / "kubernetes/grafana-dashboards.yaml").read_text()))
    assert {m["metadata"]["labels"]["grafana_dashboard"] for m in maps} == {"1"}
    data = {k: v for m in maps for k, v in m["data"].items()}
    assert data == {name: (GENERATED / name).read_text() for name in generate.DASHBOARDS}
    rule = yaml.safe_load((GENERATED / "kubernetes/prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load((GENERATED / generate.RULES_FILE).read_text())
    kustomization = yaml.safe_load((GENERATED / "kubernetes/kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (GENERATED / "kubernetes" / resource).is_file()


def test_macro_substitution() -> None:
    expr = 'sum(increase(x{organization=~"$organization"}[$__range])) / rate(y[$__rate_interval])'
    assert checks.promql_for_test(expr) == 'sum(increase(x{organization=~".*"}[1h])) / rate(y[1m])'
    sql = 'WHERE $__timeFilter("timestamp") AND o IN ($organization) AND $__timeTo() > 0'
    assert checks.sql_for_test(sql, "A", "B", "org_1") == (
        "WHERE \"timestamp\" BETWEEN 'A' AND 'B' AND o IN ('org_1') AND 'B' > 0"
    )


@pytest.mark.parametrize("name", sorted(generate.DASHBOARDS))
def test_import_inputs_and_requirements(name: str) -> None:
    """Grafana's import screen asks for one data source per data source variable, and each
    variable defaults to the answer; __requires names every plugin the dashboard uses."""
    dashboard = ALL[name]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    sources = {n: v for n, v in variables.items() if v["type"] == "datasource"}
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert len(inputs) == len(sources) >= 1
    used_by_panels: dict[str, set[str]] = {}
    for panel in checks.panels(dashboard):
        source = panel.get("datasource")
        if source and panel["type"] != "row":
            used_by_panels.setdefault(source["uid"].strip("${}"), set()).add(source["type"])
    for variable in sources.values():
        default = variable["current"]["value"]
        assert default.startswith("${") and default.endswith("}")
        entry = inputs[default[2:-1]]
        assert entry["type"] == "datasource"
        assert {entry["pluginId"]} == used_by_panels[variable["name"]] == {variable["query"]}
        assert entry["label"] and entry["pluginName"]
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    panel_types = {p["type"] for p in checks.panels(dashboard) if p["type"] != "row"}
    assert {("panel", t) for t in panel_types} | {("grafana", "grafana")} <= required
    assert {("datasource", v["query"]) for v in sources.values()} <= required


@pytest.mark.parametrize("name", sorted(generate.DASHBOARDS))
def test_schema_details(name: str) -> None:
    """Table cells say how to render; interval-only keys appear only on interval variables."""
    dashboard = ALL[name]
    for panel in checks.panels(dashboard):
        if panel["type"] == "table":
            assert panel["fieldConfig"]["defaults"]["custom"]["cellOptions"] == {"type": "auto"}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "interval":
            assert not {"auto", "auto_count", "auto_min"} & set(variable), variable["name"]
