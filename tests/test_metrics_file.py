"""The metrics file (DASHBOARD_METRICS_METRICS_FILE, --metrics-file) as every command meets it
at start-up: each validation error is one line naming the entry and exit 2, before anything is
touched; a good file's metrics are reported by `config` and join the catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard_metrics.cli.main import main
from dashboard_metrics.core import catalogue, pushed_metrics
from tests.conftest import EXAMPLE_METRICS_FILE

VARIABLE = "DASHBOARD_METRICS_METRICS_FILE"

GOOD = """\
metrics:
  - name: hitl_reviews
    type: counter
    help: Documents sent to human review
    dimensions: [workflow]
  - name: review_seconds
    type: histogram
    help: Time a reviewer spent
    unit: seconds
    buckets: [10, 30, 60]
"""

# (file text, what the one line says after "DASHBOARD_METRICS_METRICS_FILE: ")
BAD = {
    "not YAML": ("metrics: [\n  - {name: a\n", "line 2: not valid YAML"),
    "a list at the top": ("- name: a\n", "expected a mapping with one key, metrics: [...]"),
    "another top key": ("metrics: []\nextra: 1\n", "expected a mapping with one key"),
    "metrics not a list": ("metrics: 3\n", "metrics must be a list"),
    "an entry not a mapping": ("metrics: [3]\n", "metrics[0]: expected a mapping"),
    "missing name": (
        "metrics: [{type: counter, help: h}]\n",
        "metrics[0]: name is required (a non-empty string)",
    ),
    "missing type": ("metrics: [{name: a, help: h}]\n", "metrics[0] (a): type is required"),
    "missing help": ("metrics: [{name: a, type: counter}]\n", "metrics[0] (a): help is required"),
    "bad name": (
        "metrics: [{name: Bad-Name, type: counter, help: h}]\n",
        "metrics[0] (Bad-Name): name must be lower-case letters, digits and _",
    ),
    "bad type": (
        "metrics: [{name: a, type: gauge, help: h}]\n",
        "metrics[0] (a): type 'gauge' is not counter or histogram",
    ),
    "counter with buckets": (
        "metrics: [{name: a, type: counter, help: h, buckets: [1]}]\n",
        "metrics[0] (a): buckets are for histograms; a counter has none",
    ),
    "histogram without buckets": (
        "metrics: [{name: a, type: histogram, help: h}]\n",
        "metrics[0] (a): a histogram needs buckets",
    ),
    "unsorted buckets": (
        "metrics: [{name: a, type: histogram, help: h, buckets: [5, 1]}]\n",
        "metrics[0] (a): buckets must be strictly ascending",
    ),
    "repeated bucket": (
        "metrics: [{name: a, type: histogram, help: h, buckets: [1, 1]}]\n",
        "metrics[0] (a): buckets must be strictly ascending",
    ),
    "infinite bucket": (
        "metrics: [{name: a, type: histogram, help: h, buckets: [1, .inf]}]\n",
        "metrics[0] (a): bucket inf is not finite",
    ),
    "NaN bucket": (
        "metrics: [{name: a, type: histogram, help: h, buckets: [.nan]}]\n",
        "metrics[0] (a): bucket nan is not finite",
    ),
    "bucket not a number": (
        "metrics: [{name: a, type: histogram, help: h, buckets: [1, ten]}]\n",
        "metrics[0] (a): bucket 'ten' is not a number",
    ),
    "unknown dimension": (
        "metrics: [{name: a, type: counter, help: h, dimensions: [tenant]}]\n",
        "metrics[0] (a): dimension 'tenant' is not one of model, workflow, deployment",
    ),
    "dimension twice": (
        "metrics: [{name: a, type: counter, help: h, dimensions: [model, model]}]\n",
        "metrics[0] (a): a dimension is listed twice",
    ),
    "duplicate name": (
        "metrics:\n  - {name: a, type: counter, help: h}\n  - {name: a, type: counter, help: h}\n",
        "metrics[1] (a): 'a' is already used by metrics[0] (a)",
    ),
    "same Prometheus name": (
        "metrics:\n  - {name: a, type: counter, help: h}\n"
        "  - {name: a_total, type: counter, help: h}\n",
        "metrics[1] (a_total): 'a_total' is already used by metrics[0] (a)",
    ),
    "a built-in name": (
        "metrics: [{name: llm_calls, type: counter, help: h}]\n",
        "metrics[0] (llm_calls): 'llm_calls' is already a built-in metric",
    ),
    "a built-in's Prometheus name": (
        "metrics: [{name: llm_challenges, type: counter, help: h}]\n",
        "metrics[0] (llm_challenges): 'llm_challenges_total' is already a built-in metric",
    ),
    "a built-in histogram's Prometheus name": (
        "metrics: [{name: document_pages, type: histogram, help: h, buckets: [1]}]\n",
        "metrics[0] (document_pages): 'document_pages' is already a built-in metric",
    ),
    "unknown field": (
        "metrics: [{name: a, type: counter, help: h, labels: [x]}]\n",
        "metrics[0] (a): unknown field 'labels'",
    ),
    "unit not a string": (
        "metrics: [{name: a, type: counter, help: h, unit: [s]}]\n",
        "metrics[0] (a): unit must be a string",
    ),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No DASHBOARD_METRICS_* from outside, a fresh directory, and the built-in catalogue
    restored after each test (a good file installs its metrics)."""
    import os

    for name in [n for n in os.environ if n.startswith("DASHBOARD_METRICS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield
    catalogue.install_pushed(())


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line and not line.startswith("{")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


COMMANDS = {
    "config": ["config", "--check"],
    "migrate": ["migrate"],
    "dashboards": ["dashboards", "--out", "out"],
    "push": ["push", "events.jsonl", "--org-id", "org_a", "--url", "http://127.0.0.1:9"],
    "aggregate": ["aggregate", "--once"],
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_error_is_one_line_naming_the_entry_and_exit_2(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD[case]
    (tmp_path / "metrics.yaml").write_text(text)
    monkeypatch.setenv(VARIABLE, "metrics.yaml")
    assert main(["config", "--check"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"dashboard-metrics: error: {VARIABLE}: "), line
    assert expected in line, line
    assert catalogue.pushed_metrics() == ()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_a_bad_file_before_touching_anything(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "metrics.yaml").write_text(BAD["bad type"][0])
    (tmp_path / "events.jsonl").write_text('{"metric": "a"}\n')
    monkeypatch.setenv(VARIABLE, "metrics.yaml")
    assert main(COMMANDS[command]) == 2
    assert "metrics[0] (a): type 'gauge'" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "metrics.yaml"]


def test_the_flag_is_named_when_the_flag_gave_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "metrics.yaml").write_text(BAD["bad name"][0])
    assert main(["migrate", "--metrics-file", "metrics.yaml"]) == 2
    line = error_line(capsys)
    assert line.startswith("dashboard-metrics: error: --metrics-file: metrics[0] (Bad-Name)")
    assert VARIABLE not in line
    assert not (tmp_path / ".dashboard-metrics").exists()


def test_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--metrics-file", "absent.yaml"]) == 2
    line = error_line(capsys)
    assert line == (
        "dashboard-metrics: error: --metrics-file: absent.yaml: No such file or directory"
    )


def test_a_file_that_is_not_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "metrics.yaml").write_bytes(b"\xff\xfe\x00metrics")
    assert main(["config", "--metrics-file", "metrics.yaml"]) == 2
    assert "metrics.yaml: not UTF-8 text" in error_line(capsys)


def test_a_good_file_is_reported_by_config_and_joins_the_catalogue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "metrics.yaml").write_text(GOOD)
    monkeypatch.setenv(VARIABLE, "metrics.yaml")
    assert main(["config", "--check"]) == 0
    out = capsys.readouterr().out
    assert "metrics file     2 pushed metrics: hitl_reviews, review_seconds (metrics.yaml)" in out
    assert "configuration is valid" in out
    assert [m.name for m in catalogue.pushed_metrics()] == ["hitl_reviews", "review_seconds"]
    assert "hitl_reviews" in catalogue.METRIC_NAMES


def test_config_shows_the_new_settings_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DASHBOARD_METRICS_INGEST_KEYS", "wr1te-key=org_a;0ther-key=*")
    monkeypatch.setenv("DASHBOARD_METRICS_PUSH_KEY", "pu5h-key")
    monkeypatch.setenv("DASHBOARD_METRICS_EVENTS_RETENTION_DAYS", "40")
    assert main(["config", "--metrics-file", str(EXAMPLE_METRICS_FILE)]) == 0
    out = capsys.readouterr().out
    for secret in ("wr1te-key", "0ther-key", "pu5h-key"):
        assert secret not in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("DASHBOARD")}
    assert "**********=org_a; **********=*" in rows["DASHBOARD_METRICS_INGEST_KEYS"]
    assert "**********" in rows["DASHBOARD_METRICS_PUSH_KEY"]
    assert "40" in rows["DASHBOARD_METRICS_EVENTS_RETENTION_DAYS"]
    assert "(--metrics-file)" in rows[VARIABLE]
    assert "events endpoint  2 ingest keys" in out
    assert "3 pushed metrics: hitl_reviews, hitl_completions, hitl_review_seconds" in out


def test_without_a_file_there_are_no_pushed_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    assert "metrics file     none (no pushed metrics)" in capsys.readouterr().out
    assert catalogue.pushed_metrics() == ()


def test_the_example_file_loads() -> None:
    loaded = pushed_metrics.load(str(EXAMPLE_METRICS_FILE))
    assert [m.name for m in loaded] == ["hitl_reviews", "hitl_completions", "hitl_review_seconds"]
    assert [m.prometheus_name for m in loaded] == [
        "hitl_reviews_total",
        "hitl_completions_total",
        "hitl_review_seconds",
    ]
    assert all(m.pushed and [d.value for d in m.dimensions] == ["workflow"] for m in loaded)
    assert loaded[2].buckets == (10, 30, 60, 120, 300, 600, 1800)
