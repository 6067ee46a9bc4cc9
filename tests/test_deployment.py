"""docker/: the compose file and the Kubernetes manifests parse and reference only what the project has.

No Docker engine runs here, so these check the files the way a reviewer would: every command is a real
``forwarder`` subcommand, every setting a real setting, every probe a real endpoint, every path real.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from forwarder.cli import build_parser
from forwarder.settings import setting_names

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
_commands = build_parser([])._subparsers._group_actions[0]  # type: ignore[union-attr]  # argparse keeps them private
SUBCOMMANDS = set(_commands.choices or ())
SETTINGS = setting_names()
WORKER_PAGES = {"/healthz", "/readyz", "/metrics"}
PROJECT_IMAGE = "moengage-amplitude-forwarder:0.1.0"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_dockerfile_is_slim_pinned_non_root_with_a_health_check_and_real_paths() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases
    assert set(bases) == {"${PYTHON_BASE}"}  # one base for both stages
    [base] = re.findall(r"^ARG PYTHON_BASE=(\S+)$", text, re.M)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base)  # a tag, pinned by digest
    assert "--require-hashes -r requirements.lock" in text
    assert re.search(r"^USER 10001$", text, re.M)
    assert "HEALTHCHECK" in text
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
    entry = re.search(r'^CMD \["(\w[\w-]*)"\]', text, re.M)
    assert entry is not None
    assert entry.group(1) in SUBCOMMANDS


def test_compose_services_use_real_commands_settings_and_the_project_image() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "topics", "amplitude", "worker", "ingest"}
    for name, service in services.items():
        if name == "kafka":
            assert service["image"].startswith("apache/kafka:4.")
            continue
        assert service["image"] == PROJECT_IMAGE
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        assert service["command"][0] in SUBCOMMANDS, service["command"]
        build_parser(service["command"]).parse_args(service["command"])  # the arguments parse too
        assert set(service["environment"]) <= SETTINGS, set(service["environment"]) - SETTINGS
    assert int(services["worker"]["stop_grace_period"].rstrip("s")) > 20


def test_kubernetes_manifests_have_probes_grace_resources_and_disruption_budgets() -> None:
    config = {d["kind"]: d for d in documents(DOCKER / "k8s" / "configmap.yaml")}["ConfigMap"]["data"]
    assert set(config) <= SETTINGS
    secret = documents(DOCKER / "k8s" / "secret.example.yaml")[0]
    assert set(secret["stringData"]) <= SETTINGS
    deadline = float(config["FORWARDER_SHUTDOWN_DEADLINE_S"])
    kinds: dict[str, int] = {}
    for path in sorted((DOCKER / "k8s").glob("*.yaml")):
        for doc in documents(path):
            kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
            if doc["kind"] != "Deployment":
                continue
            pod = doc["spec"]["template"]["spec"]
            assert pod["terminationGracePeriodSeconds"] > deadline
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                assert container["image"] == PROJECT_IMAGE
                assert container["args"][0] in SUBCOMMANDS
                assert {e["name"] for e in container.get("env", [])} <= SETTINGS
                assert {
                    container["livenessProbe"]["httpGet"]["path"],
                    container["readinessProbe"]["httpGet"]["path"],
                } <= WORKER_PAGES
                assert "memory" in container["resources"]["limits"]
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert "/tmp" in mounts  # read-only root filesystem; faust keeps its data dir in /tmp
    assert kinds["Deployment"] == 3  # worker, ingest, cohort worker
    assert kinds["PodDisruptionBudget"] == 3


# The Kubernetes version the manifests are validated against: the schemas ship with kubernetes-validate.
KUBERNETES_VERSION = "1.33.0"


def test_every_manifest_validates_strictly_against_the_kubernetes_schemas() -> None:
    """Unknown or misspelt fields fail here, not at ``kubectl apply`` (kubernetes-validate, strict)."""
    checked = 0
    for path in sorted((DOCKER / "k8s").glob("*.yaml")):
        for doc in documents(path):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            checked += 1
    assert checked >= 12


def test_every_pod_is_locked_down_and_every_component_has_a_network_policy() -> None:
    deployments = [d for path in sorted((DOCKER / "k8s").glob("*.yaml")) for d in documents(path)]
    policies = [d for d in deployments if d["kind"] == "NetworkPolicy"]
    components = set()
    for doc in (d for d in deployments if d["kind"] == "Deployment"):
        pod = doc["spec"]["template"]["spec"]
        components.add(doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["runAsNonRoot"] is True
    covered = set()
    for policy in policies:
        selector = policy["spec"]["podSelector"]
        covered |= {selector.get("matchLabels", {}).get("app.kubernetes.io/component")}
        for expression in selector.get("matchExpressions", []):
            if expression["key"] == "app.kubernetes.io/component":
                covered |= set(expression["values"])
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert components == {"worker", "ingest", "cohorts"}
    assert components <= covered
    [ingress] = [d for d in deployments if d["kind"] == "Ingress"]
    assert ingress["spec"]["tls"]  # MoEngage's Basic credentials never cross the internet in clear
