"""Several MoEngage apps into several Amplitude projects, on a real broker: each project gets exactly its events,
an app no route takes goes to the default route (or is dead-lettered ``no_route``), and one project that keeps
failing never holds up the others."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from devkit.amplitude import AmplitudeService, ServiceThread
from devkit.environment import TWO_PROJECTS_ROUTES
from devkit.observe import out_of_user_order, wait_until_committed
from devkit.traffic import numbered_body
from forwarder.core.keys import partition_key
from forwarder.kafka.admin import create_topics
from tests.helpers import run_forwarder
from tests.kafka_helpers import produce, read_all

pytestmark = pytest.mark.kafka

APPS = ["Shop EU", "Shop US", "Shop Staging", "Shop Unknown"]


@pytest.fixture
def projects() -> Iterator[dict[str, tuple[AmplitudeService, str]]]:
    """Two local Amplitude projects, each accepting its own key only."""
    services = {"eu": AmplitudeService(api_keys={"key-eu"}), "us": AmplitudeService(api_keys={"key-us"})}
    runners = {name: ServiceThread(service.app) for name, service in services.items()}
    urls = {name: runner.start() for name, runner in runners.items()}
    yield {name: (services[name], urls[name]) for name in services}
    for runner in runners.values():
        runner.stop()


def bodies(count: int, users: int = 40) -> list[dict[str, Any]]:
    sequence: dict[str, int] = {}
    return [numbered_body(n, APPS, users, sequence) for n in range(count)]


def environment(kafka: str, names: Any, routes_file: Path, projects: dict[str, Any], **extra: str) -> dict[str, str]:
    source = names("src")
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "FORWARDER_SOURCE_TOPIC": source,
        "FORWARDER_RETRY_TOPIC": source + "-retry",
        "FORWARDER_DLQ_TOPIC": source + "-dlq",
        "FORWARDER_LEDGER_TOPIC": source + "-ledger",
        "FORWARDER_GROUP_ID": names("grp"),
        "FORWARDER_ROUTES_FILE": str(routes_file),
        "EU_KEY": "key-eu",
        "US_KEY": "key-us",
        "AMPLITUDE_API_KEY": "key-us",  # the default route's project: the US one
        "AMPLITUDE_API_URL": projects["us"][1],
        **extra,
    }


def publish(kafka: str, env: dict[str, str], sent: list[dict[str, Any]]) -> None:
    source = env["FORWARDER_SOURCE_TOPIC"]
    topics = {source: 3, env["FORWARDER_RETRY_TOPIC"]: 3, env["FORWARDER_DLQ_TOPIC"]: 1}
    asyncio.run(create_topics(kafka, topics))
    asyncio.run(create_topics(kafka, {env["FORWARDER_LEDGER_TOPIC"]: 1}, config={"cleanup.policy": "compact,delete"}))
    asyncio.run(produce(kafka, source, [orjson.dumps(b) for b in sent], [partition_key(b["events"][0]) for b in sent]))


def until_committed(worker: Any, kafka: str, env: dict[str, str]) -> str:
    """Runs the worker until it committed everything; its metrics page, then it stops cleanly."""
    source, group = env["FORWARDER_SOURCE_TOPIC"], env["FORWARDER_GROUP_ID"]
    asyncio.run(wait_until_committed(kafka, source, group, 120, worker.alive))
    metrics: str = worker.metrics()
    assert worker.stop() == 0
    return metrics


def received(service: AmplitudeService) -> set[str]:
    return set(service.recorder.by_insert_id)


def ids_of(sent: list[dict[str, Any]], apps: set[str]) -> set[str]:
    return {e["event_uuid"] for b in sent if b["app_name"] in apps for e in b["events"]}


def test_each_project_gets_exactly_its_apps_events_and_the_report_balances_per_route(
    kafka, projects, topic_names, worker_factory, tmp_path
) -> None:
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text(TWO_PROJECTS_ROUTES.format(eu=projects["eu"][1], us=projects["us"][1]))
    env = environment(kafka, topic_names, routes_file, projects)
    sent = bodies(120)
    publish(kafka, env, sent)
    metrics = until_committed(worker_factory(**env).start(), kafka, env)

    eu, us = projects["eu"][0], projects["us"][0]
    assert received(eu) == ids_of(sent, {"Shop EU"})
    # The US project is also the default route's: the US app and the two apps no route names.
    assert received(us) == ids_of(sent, {"Shop US", "Shop Staging", "Shop Unknown"})
    assert 'route="eu"' in metrics
    assert 'route="rest"' in metrics

    report = run_forwarder(env, "report", "--by", "route", "--format", "json")
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    rows = {row["route"]: row for row in orjson.loads(report.stdout)["rows"]}
    assert {name: row["delivered"] for name, row in rows.items()} == {"eu": 300, "us": 300, "rest": 600}
    assert all(row["read"] == row["delivered"] for row in rows.values())
    by_code = orjson.loads(run_forwarder(env, "report", "--by", "code", "--format", "json").stdout)
    assert {row["route"] for row in by_code["rows"]} == {"eu", "us", "rest"}  # the route is a column


def test_without_a_default_route_an_unknown_app_is_dead_lettered_no_route(
    kafka, projects, topic_names, worker_factory, tmp_path
) -> None:
    routes_file = tmp_path / "routes.toml"
    text = TWO_PROJECTS_ROUTES.format(eu=projects["eu"][1], us=projects["us"][1])
    routes_file.write_text(text.replace("default = true", 'app_names = ["Shop Staging"]'))
    env = environment(kafka, topic_names, routes_file, projects)
    sent = bodies(40)
    publish(kafka, env, sent)
    until_committed(worker_factory(**env).start(), kafka, env)

    unknown = [b for b in sent if b["app_name"] == "Shop Unknown"]
    dead = asyncio.run(read_all(kafka, env["FORWARDER_DLQ_TOPIC"], expected=len(unknown)))
    assert len(dead) == len(unknown)
    assert {dict(r.headers)["dlq.reason"] for r in dead} == {b"no_route"}
    assert sorted(orjson.loads(r.value)["app_name"] for r in dead) == ["Shop Unknown"] * len(unknown)
    assert not ids_of(unknown, {"Shop Unknown"}) & (received(projects["us"][0]) | received(projects["eu"][0]))


def test_a_project_that_keeps_failing_is_parked_and_the_others_keep_flowing(
    kafka, projects, topic_names, worker_factory, tmp_path
) -> None:
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text(TWO_PROJECTS_ROUTES.format(eu=projects["eu"][1], us=projects["us"][1]))
    env = environment(kafka, topic_names, routes_file, projects, FORWARDER_ROUTE_PARK_AFTER_S="3")
    eu, us = projects["eu"][0], projects["us"][0]
    eu.faults.outage_until = time.time() + 40  # the EU project answers 503 for 40 s
    eu.faults.outage_status = 503
    worker = worker_factory(**env).start()
    sent = bodies(200)
    publish(kafka, env, sent[:100])
    others = ids_of(sent, {"Shop US", "Shop Staging", "Shop Unknown"})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not ids_of(sent[:100], {"Shop US"}) <= received(us):
        time.sleep(0.5)
    # The US project got its events while the EU one was down.
    assert ids_of(sent[:100], {"Shop US", "Shop Staging", "Shop Unknown"}) <= received(us)
    assert time.time() < eu.faults.outage_until
    deadline = time.monotonic() + 20  # parked after 3 s of failures; said at the watchdog's next look (5 s)
    readiness = worker.readiness()
    while time.monotonic() < deadline and not readiness.get("parked_routes"):
        time.sleep(0.5)
        readiness = worker.readiness()
    assert readiness.get("parked_routes") == ["eu"], readiness
    assert readiness["status"] == "ready"  # the other routes flow
    assert 'forwarder_route_parked{route="eu"} 1.0' in worker.metrics()
    publish_more = sent[100:]
    asyncio.run(
        produce(
            kafka,
            env["FORWARDER_SOURCE_TOPIC"],
            [orjson.dumps(b) for b in publish_more],
            [partition_key(b["events"][0]) for b in publish_more],
        )
    )
    asyncio.run(
        wait_until_committed(kafka, env["FORWARDER_SOURCE_TOPIC"], env["FORWARDER_GROUP_ID"], 180, worker.alive)
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ids_of(sent, {"Shop EU"}) <= received(eu):
        time.sleep(0.5)
    assert received(eu) == ids_of(sent, {"Shop EU"})  # all of them, once the project answered again
    assert received(us) == others
    # Each user's events arrived in the order they were sent, the parked ones included.
    assert out_of_user_order(eu.recorder.events) is None
    assert out_of_user_order(us.recorder.events) is None
    assert worker.stop() == 0
