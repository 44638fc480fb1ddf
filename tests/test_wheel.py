"""The wheel installs one import root, `dashboard_metrics`, and its CLI works from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to build the wheel (the README's set-up installs it)"
    return uv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [_uv(), "build", "--wheel", "--out-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_holds_only_dashboard_metrics(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    roots = {name.split("/")[0] for name in names}
    assert roots == {"dashboard_metrics", "dashboard_metrics-0.1.0.dist-info"}
    for layer in ("aggregator", "exporter", "dashboards", "core", "cli"):
        assert f"dashboard_metrics/{layer}/__init__.py" in names
    assert "dashboard_metrics/py.typed" in names
    assert "dashboard_metrics/core/migrations/versions/0001_initial.py" in names
    # Generated output and test-only modules stay in the repository.
    assert not [n for n in names if "/generated/" in n or n.endswith("dashboards/checks.py")]
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]


def test_the_installed_cli_runs_and_writes_outside_site_packages(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)],
        check=True,
        env=env,
        timeout=120,
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", str(python), str(wheel)],
        check=True,
        env=env,
        timeout=600,
    )
    work = tmp_path / "work"
    work.mkdir()
    cli = str(venv / "bin" / "dashboard-metrics")
    clean = {k: v for k, v in env.items() if not k.startswith(("DASHBOARD_METRICS_", "PYTHON"))}
    version = subprocess.run(
        [cli, "--version"], cwd=work, env=clean, capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and "dashboard-metrics 0.1.0" in version.stdout
    written = subprocess.run(
        [cli, "dashboards"], cwd=work, env=clean, capture_output=True, text=True, timeout=120
    )
    assert written.returncode == 0, written.stderr
    assert (work / "dashboards" / "generated" / "usage-overview.json").is_file()
    site = subprocess.run(
        [
            str(python),
            "-c",
            "import dashboard_metrics, os; print(os.path.dirname(dashboard_metrics.__file__))",
        ],
        cwd=work,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert not (Path(site) / "dashboards" / "generated").exists()
    # The one import root: the layers are not importable under their short names.
    probe = subprocess.run(
        [str(python), "-c", "import aggregator"], cwd=work, env=clean, capture_output=True
    )
    assert probe.returncode != 0
