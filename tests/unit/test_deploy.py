"""Offline checks of deploy/: Kubernetes manifests against the API schemas, compose and systemd wiring."""

import configparser
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from infrahaus.cli import build_parser
from infrahaus_domain.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _k8s_resources() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in K8S_FILES
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]


@pytest.mark.parametrize(("name", "resource"), _k8s_resources(), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_manifest_is_valid(name: str, resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_set_is_complete() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in _k8s_resources()}
    assert ("Deployment", "infrahaus-api") in kinds
    assert ("Service", "infrahaus-api") in kinds
    assert ("Deployment", "infrahaus-worker") in kinds
    assert ("Job", "infrahaus-migrate") in kinds
    assert ("ConfigMap", "infrahaus-config") in kinds
    assert ("Secret", "infrahaus-secrets") in kinds
    assert ("PodDisruptionBudget", "infrahaus-api") in kinds
    assert ("PodDisruptionBudget", "infrahaus-worker") in kinds
    assert ("HorizontalPodAutoscaler", "infrahaus-worker") in kinds
    listed = set(yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S_FILES if p.name != "kustomization.yaml"}


def test_api_probes_use_the_health_endpoints() -> None:
    api = next(doc for _, doc in _k8s_resources() if doc["kind"] == "Deployment" and "api" in doc["metadata"]["name"])
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"


def _container_verbs() -> list[list[str]]:
    verbs: list[list[str]] = []
    for _, doc in _k8s_resources():
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        verbs.extend(c["args"] for c in pod.get("containers", []))
    return verbs


def test_compose_is_well_formed() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    for name in ("postgres", "redis", "api"):
        assert "healthcheck" in services[name], name
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for volume in (v.split(":")[0] for s in services.values() for v in s.get("volumes", [])):
        assert volume in compose["volumes"]


def _systemd_exec_verbs() -> list[list[str]]:
    verbs: list[list[str]] = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(unit.read_text())
        verbs.append(shlex.split(parser["Service"]["ExecStart"])[1:])
    return verbs


def test_every_deployed_command_parses_with_the_cli() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    commands = [
        s["command"] for s in compose["services"].values() if "command" in s and s.get("image") == "infrahaus:latest"
    ]
    commands += [s["command"] for s in compose["services"].values() if "build" in s]
    commands += _container_verbs() + _systemd_exec_verbs()
    assert commands
    parser = build_parser()
    for argv in commands:
        # Parsing proves the verb and every flag the deployment passes exist.
        parsed = parser.parse_args(argv)
        assert parsed.verb == argv[0]


def test_image_installs_the_cli_without_the_simulator() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    # `uv sync --locked` needs every member's manifest (the lock names them all) ...
    for member in members:
        assert f"COPY {member}/pyproject.toml {member}/pyproject.toml" in dockerfile, member
    # ... but installs only the CLI and its dependencies: no dev group, no `demo` extra (the simulator).
    syncs = re.findall(r"uv sync ([^\n]*)", dockerfile)
    assert syncs
    for options in syncs:
        assert re.search(r"--package infrahaus(\s|$)", options), options
        assert "--no-dev" in options, options
        assert "extra" not in options, options


def test_every_deployment_says_whose_forwarded_for_to_trust() -> None:
    """Behind an ingress, every client would otherwise share the ingress's login-throttling bucket."""
    config = next(doc for _, doc in _k8s_resources() if doc["kind"] == "ConfigMap")
    proxies = Settings.from_env({"INFRAHAUS_TRUSTED_PROXIES": config["data"]["INFRAHAUS_TRUSTED_PROXIES"]})
    assert proxies.http.trusted_proxies
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert "INFRAHAUS_TRUSTED_PROXIES" in compose["x-infrahaus-env"]
    systemd = (DEPLOY / "systemd" / "infrahaus.env.example").read_text()
    line = next(line for line in systemd.splitlines() if line.startswith("INFRAHAUS_TRUSTED_PROXIES="))
    assert Settings.from_env({"INFRAHAUS_TRUSTED_PROXIES": line.partition("=")[2]}).http.trusted_proxies == (
        "127.0.0.1/32",
        "::1/128",
    )
