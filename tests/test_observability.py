"""The Grafana dashboard and the Prometheus alert rules name only metrics that the running worker, ingest service
and cohort worker export (scraped here), and the rules file has the shape Prometheus loads."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml

from devkit.amplitude import ServiceThread
from devkit.cohorts_demo import cohort_rig
from forwarder.cohorts.webhook import CohortRoute
from forwarder.ingest.app import create_ingest_app
from forwarder.intake.auth import Credentials
from forwarder.intake.sink import KafkaSink
from forwarder.kafka.admin import create_topics
from tests.worker.test_worker_delivery import worker_env

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = json.loads((ROOT / "docker" / "grafana" / "forwarder.json").read_text())
RULES = yaml.safe_load((ROOT / "docker" / "prometheus" / "alerts.yaml").read_text())
OURS = re.compile(r"\b(?:forwarder|ingest|cohort|moengage)_[a-z0-9_]+\b")
LABELS = {"cohort_id"}  # label names that look like ours


def expressions() -> list[str]:
    panels = [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]
    return panels + [rule["expr"] for group in RULES["groups"] for rule in group["rules"]]


def exported(text: str) -> set[str]:
    """Sample names, and the names a family's samples take once it has any (a labelled metric starts empty)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            base = name.removesuffix("_total")
            names |= {name, base + "_total"} if kind == "counter" else {name}
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def scrape(url: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200:
                return answer.text
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(url)
        time.sleep(0.5)


def test_the_rules_file_has_the_shape_prometheus_loads() -> None:
    [group] = RULES["groups"]
    names = [rule["alert"] for rule in group["rules"]]
    assert len(names) == len(set(names)) >= 8
    for rule in group["rules"]:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
        assert rule["expr"].count("(") == rule["expr"].count(")")


@pytest.mark.kafka
def test_every_metric_the_dashboard_and_alerts_name_is_exported(
    kafka, amplitude, topic_names, worker_factory, tmp_path
):
    _, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1}))
    worker = worker_factory(**worker_env(kafka, url, source, dlq, group)).start()
    sink = KafkaSink(kafka, source, 5, max_request_bytes=2_000_000)
    cohort_route = CohortRoute("/amplitude/cohorts", Credentials(), topic_names("cohorts"))
    ingest = ServiceThread(create_ingest_app(sink, Credentials(), mounts=[cohort_route]))
    metrics_text = scrape(ingest.start() + "/metrics")
    try:
        metrics_text += scrape(f"http://127.0.0.1:{worker.web_port}/metrics")
        with cohort_rig(kafka, tmp_path, partitions=1) as rig:
            cohorts = rig.start_worker()
            metrics_text += scrape(f"http://127.0.0.1:{cohorts.web_port}/metrics")  # type: ignore[attr-defined]
    finally:
        ingest.stop()
        worker.stop()
    referenced = {name for expr in expressions() for name in OURS.findall(expr)} - LABELS
    available = exported(metrics_text)
    print(f"\n{len(referenced)} metrics referenced, {len(available)} exported names: {sorted(referenced)}")
    assert referenced
    assert referenced <= available, sorted(referenced - available)
