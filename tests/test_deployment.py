"""docker/: the compose file and the Kubernetes manifests parse and reference only what the project has.

No Docker engine runs here, so these check the files the way a reviewer would: every command is a real
``forwarder`` subcommand, every setting a real setting, every probe a real endpoint, every path real.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
    assert all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", b) for b in bases)
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
    assert kinds["Deployment"] == 2
    assert kinds["PodDisruptionBudget"] == 2
