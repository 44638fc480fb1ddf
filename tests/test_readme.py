"""The README stays true to the code: every setting and command is documented, every flag in
the configuration table exists, and every shell block marked runnable runs, as written, against
a fresh `up` directory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import yaml

from dashboard_metrics.aggregator.doctor import create_index
from dashboard_metrics.cli.main import COMMANDS
from dashboard_metrics.cli.parser import SETTING_FLAGS, build_parser, options, subparsers
from dashboard_metrics.core.setting_types import ENV_PREFIX
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.source_tables import RECOMMENDED_INDEXES
from tests.processes import LineReader, wait_for
from tests.test_up import free_port

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"(?:<!-- (runnable|not-runnable: [^>]+) -->\n)?```(\w*)\n(.*?)```", re.S)


def blocks(language: str) -> list[tuple[str | None, str]]:
    """(marker, text) of every fenced block in ``language``."""
    return [(m.group(1), m.group(3)) for m in FENCE.finditer(README) if m.group(2) == language]


def test_every_setting_is_documented() -> None:
    missing = [
        f.name
        for f in fields(Settings)
        if f"{ENV_PREFIX}{f.name.upper()}" not in README and f"`_{f.name.upper()}`" not in README
    ]
    assert not missing, missing


def test_every_command_is_documented() -> None:
    table = README.split("## Commands\n")[1].strip().split("\n\n")[0]
    documented = re.findall(r"^\| `([a-z-]+)` \|", table, re.M)
    assert documented == list(COMMANDS)


def test_the_two_set_up_commands_are_there() -> None:
    assert "uv run dashboard-metrics up" in README
    assert "uv run pytest" in README


def test_every_shell_block_is_marked() -> None:
    unmarked = [text for marker, text in blocks("sh") if marker is None]
    assert not unmarked, unmarked
    assert sum(marker == "runnable" for marker, _ in blocks("sh")) >= 4


def test_shell_examples_are_portable() -> None:
    """macOS has BSD tools: no GNU-only date arithmetic."""
    for _marker, text in blocks("sh"):
        assert not re.search(r"\bdate\b[^\n|;]*\s(-d|--date)\b", text), text


def test_configuration_table_flags_exist() -> None:
    table = README.split("## Configuration\n")[1].split("###")[0]
    every_flag = {o for sub in subparsers(build_parser()).values() for o in options(sub)}
    by_setting = {flag.flag: name for name, flag in SETTING_FLAGS.items()}
    listed: set[str] = set()
    for row in re.findall(r"^\| `DASHBOARD_METRICS_.*$", table, re.M):
        variables, flag_cell = row.split(" | ")[:2]
        names = [n.lower() for n in re.findall(r"`(?:DASHBOARD_METRICS)?_([A-Z_]+)`", variables)]
        flags = re.findall(r"`(--[a-z-]+)`", flag_cell)
        if flag_cell.strip() == "none":
            assert not any(n in SETTING_FLAGS for n in names), row
            continue
        assert flags, row
        for flag in flags:
            assert flag in every_flag, flag
            assert by_setting[flag] in names, (flag, row)
        listed |= set(flags)
    assert listed == set(by_setting)


def test_recommended_indexes_are_what_doctor_prints() -> None:
    sql = "\n".join(text for _marker, text in blocks("sql"))
    for table, indexes in RECOMMENDED_INDEXES.items():
        for columns in indexes:
            assert create_index("postgresql", "unstract", table, columns) in sql


def test_kubernetes_secret_is_in_the_readme() -> None:
    example = yaml.safe_load((ROOT / "deploy/kubernetes/secret.example.yaml").read_text())
    manifests = [yaml.safe_load(text) for _marker, text in blocks("yaml")]
    secret = next(m for m in manifests if m and m.get("kind") == "Secret")
    assert secret["metadata"]["name"] == example["metadata"]["name"]
    assert set(secret["stringData"]) == set(example["stringData"])
    command = next(text for _marker, text in blocks("sh") if "kubectl create secret" in text)
    assert f"generic {example['metadata']['name']}" in command
    assert set(re.findall(r"--from-literal=(\w+)=", command)) == set(example["stringData"])
    manifests_using_it = [
        path
        for path in (ROOT / "deploy/kubernetes").rglob("*.yaml")
        if path.name != "secret.example.yaml" and example["metadata"]["name"] in path.read_text()
    ]
    assert manifests_using_it


def test_runnable_blocks_run_against_a_fresh_up(tmp_path: Path) -> None:
    port = free_port()
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_METRICS_")}
    env.update(
        PATH=f"{venv_bin}:{env['PATH']}",
        UV_PROJECT=str(ROOT),  # `uv run` from the fresh directory uses this checkout
        UV_NO_SYNC="1",
        UV_PYTHON_DOWNLOADS="never",
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "dashboard_metrics", "up", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = LineReader(up.stdout)  # type: ignore[arg-type]
    LineReader(up.stderr)  # type: ignore[arg-type]
    try:
        wait_for(lambda: "export ORG=" in out.text() or up.poll() is not None, timeout=120)
        assert up.poll() is None, out.text()
        export = next(line for line in out.text().splitlines() if "export ORG=" in line).strip()
        runnable = [text for marker, text in blocks("sh") if marker == "runnable"]
        for text in runnable:
            script = text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            check = "\ncomplete -p dashboard-metrics" if "completion bash" in text else ""
            result = subprocess.run(
                ["bash", "-c", f"set -euo pipefail\n{export}\n{script}{check}"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, (text, result.stdout[-2000:], result.stderr[-2000:])
            assert "Traceback" not in result.stderr, text
            assert "dashboard-metrics: error" not in result.stderr, text
            assert '"level": "error"' not in result.stderr, text
            assert result.stdout.strip(), text
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
