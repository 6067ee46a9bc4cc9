"""The worker on a real Apache Kafka broker: delivery, commits that follow final outcomes, dead letters."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from devkit.environment import worker_environment
from devkit.observe import scrape_outcomes, wait_until_committed
from devkit.traffic import streams_requests
from forwarder.core.keys import partition_key
from forwarder.kafka.admin import create_topics, partition_offsets
from forwarder.kafka.dead_letters import header_map
from tests.kafka_helpers import produce, read_all

pytestmark = pytest.mark.kafka


def worker_env(kafka: str, url: str, source: str, dlq: str, group: str, key: str = "test-key") -> dict[str, str]:
    return worker_environment(kafka, url, source, group, dlq, key)


def test_events_arrive_and_committed_offsets_cover_exactly_the_delivered(kafka, amplitude, topic_names, worker_factory):
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 3, dlq: 1}))
    bodies = list(streams_requests(1000, per_request=50, seed=11))
    asyncio.run(
        produce(kafka, source, [orjson.dumps(b) for b in bodies], [partition_key(b["events"][0]) for b in bodies])
    )

    worker = worker_factory(**worker_env(kafka, url, source, dlq, group)).start()
    committed = asyncio.run(wait_until_committed(kafka, source, group, 120, worker.alive))
    totals = scrape_outcomes(f"http://127.0.0.1:{worker.web_port}/metrics")
    # Only the worker's own pages: faust's router, table, graph and stats pages are off.
    for page in ("/router/", "/table/", "/graph/", "/stats/"):
        assert httpx.get(f"http://127.0.0.1:{worker.web_port}{page}", timeout=10).status_code == 404, page
    deadline = time.monotonic() + 20
    lag_lines: list[str] = []
    while time.monotonic() < deadline:  # the lag gauge is refreshed every 5 s
        lag_lines = [line for line in worker.metrics().splitlines() if line.startswith("forwarder_consumer_lag{")]
        if len([line for line in lag_lines if f'topic="{source}"' in line]) == 3 and all(
            line.endswith(" 0.0") for line in lag_lines
        ):
            break
        time.sleep(0.5)
    assert len([line for line in lag_lines if f'topic="{source}"' in line]) == 3, lag_lines
    assert all(line.endswith(" 0.0") for line in lag_lines), lag_lines
    assert worker.stop() == 0

    ends, _ = asyncio.run(partition_offsets(kafka, source))
    assert committed == ends  # every message, and no more, has a committed final outcome
    events = [e for b in bodies for e in b["events"]]
    expected_sendable = {
        e["event_uuid"]
        for e in events
        if e["event_code"] != "ADD_TO_CART"
        and (e["uid"] or e["user_attributes"].get("moe_anonymous_id"))
        and not (e["uid"] == "u1" and "moe_anonymous_id" not in e["user_attributes"])
    }
    assert set(service.recorder.by_insert_id) == expected_sendable
    assert totals.by_outcome["delivered"] == len(expected_sendable)
    assert totals.read == len(events)
    campaign = [e for e in events if e["event_code"] != "ADD_TO_CART"]
    no_ids = [e for e in campaign if not e["uid"] and not e["user_attributes"].get("moe_anonymous_id")]
    short = [e for e in campaign if e["uid"] == "u1" and not e["user_attributes"].get("moe_anonymous_id")]
    assert totals.by_reason["dropped", "unidentifiable"] == len(no_ids) > 0
    assert totals.by_reason["dropped", "id_too_short"] == len(short) > 0
    assert totals.by_reason["filtered", "not_selected"] == len(events) - len(campaign) > 0
    accepted = service.recorder.events
    assert all(e["event_properties"]["$source"] == "MOENGAGE" for e in accepted)


def test_nothing_is_committed_while_amplitude_fails_and_all_arrives_after(
    kafka, amplitude, topic_names, worker_factory
):
    service, url = amplitude
    service.faults.outage_until = time.time() + 3600
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 2, dlq: 1}))
    bodies = list(streams_requests(300, per_request=30, seed=5))
    asyncio.run(produce(kafka, source, [orjson.dumps(b) for b in bodies]))

    worker = worker_factory(**worker_env(kafka, url, source, dlq, group)).start()
    deadline = time.monotonic() + 60
    while service.recorder.requests < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert service.recorder.requests >= 5, worker.log()
    time.sleep(2.5)  # more than the commit interval: a wrongly acked batch would be committed by now
    _, committed = asyncio.run(partition_offsets(kafka, source, group))
    assert sum(committed.values()) == 0
    assert service.recorder.accepted == 0

    service.faults.outage_until = 0
    committed = asyncio.run(wait_until_committed(kafka, source, group, 120, worker.alive))
    ends, _ = asyncio.run(partition_offsets(kafka, source))
    assert committed == ends
    assert service.recorder.accepted > 0
    assert worker.alive()


def test_poison_messages_are_dead_lettered_with_reasons_and_the_worker_keeps_going(
    kafka, amplitude, topic_names, worker_factory
):
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1}, config={"max.message.bytes": str(8 * 1024 * 1024)}))
    good = {"event_code": "SMS_SENT", "event_uuid": "good-1", "uid": "customer-1", "event_time": 1_700_000_000}
    # A Streams body whose campaign name holds one cp1252 byte (a Windows apostrophe): repaired, not refused.
    cp1252 = (
        b'{"moe_request_id": "req-cp1252", "events": [{"event_code": "SMS_SENT", "event_uuid": "repaired-1", '
        b'"uid": "customer-4", "event_time": 1700000000, "event_attributes": {"campaign_name": "Summer\x92s sale"}}]}'
    )
    poison = [
        b"{not json",
        b"\xff\xfe\xfa not utf-8",  # not UTF-8, and not JSON once repaired either
        orjson.dumps({"events": [{"event_code": "SMS_SENT", "uid": "customer-2", "event_time": "soon"}]}),
        orjson.dumps(
            {"events": [{"event_code": "SMS_SENT", "uid": "customer-3", "event_time": 1, "event_attributes": [1]}]}
        ),
        orjson.dumps({"events": [good], "padding": "x" * (5 * 1024 * 1024)}),
        b"[" * 10_000 + b"]" * 10_000,
        orjson.dumps(good),
        cp1252,
    ]
    asyncio.run(produce(kafka, source, poison))

    worker = worker_factory(**worker_env(kafka, url, source, dlq, group)).start()
    asyncio.run(wait_until_committed(kafka, source, group, 120, worker.alive))
    letters = asyncio.run(read_all(kafka, dlq, expected=6))
    assert worker.alive()
    metrics = worker.metrics()

    reasons = sorted(header_map(r.headers)["reason"] for r in letters)
    assert reasons == sorted(["invalid_json"] * 3 + ["invalid_time", "wrong_type", "too_large"])
    by_offset = {header_map(r.headers)["source_offset"]: r for r in letters}
    first = header_map(by_offset["1"].headers)
    assert (first["source_topic"], first["source_partition"], first["reason"]) == (source, "0", "invalid_json")
    assert by_offset["1"].value == poison[1]  # the original bytes
    by_reason = {header_map(r.headers)["reason"]: r for r in letters}
    assert orjson.loads(by_reason["invalid_time"].value)["uid"] == "customer-2"  # the single offending event
    too_large = header_map(by_reason["too_large"].headers)
    assert by_reason["too_large"].value == b""
    assert too_large["value_omitted"].startswith(f"{len(poison[4])} bytes")
    assert too_large["source_offset"] == "4"
    assert set(service.recorder.by_insert_id) == {"good-1", "repaired-1"}
    [repaired] = [e for e in service.recorder.events if e["insert_id"] == "repaired-1"]
    assert repaired["event_properties"]["campaign_name"] == "Summer\ufffds sale"
    assert 'forwarder_events_repaired_total{reason="invalid_utf8"} 1.0' in metrics
    [line] = [orjson.loads(x) for x in worker.log().splitlines() if "repaired input" in x]
    assert line["moe_request_id"] == "req-cp1252"


def test_an_invalid_key_stops_delivery_commits_nothing_and_says_why(kafka, amplitude, topic_names, worker_factory):
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1}))
    asyncio.run(produce(kafka, source, [orjson.dumps(b) for b in streams_requests(200, per_request=20)]))

    secret = "definitely-wrong-key-9f8e7d"
    worker = worker_factory(**worker_env(kafka, url, source, dlq, group, key=secret)).start()
    readiness = wait_for_readiness(worker, lambda body: body.get("status") == "failed")
    assert "refused the API key" in readiness["reason"]
    time.sleep(2.5)  # past the commit interval
    assert worker.alive()  # parked, not crash-looping: the orchestrator sees why
    _, committed = asyncio.run(partition_offsets(kafka, source, group))
    assert sum(committed.values()) == 0
    assert service.recorder.accepted == 0
    assert worker.stop() == 0
    log = worker.log()
    assert "fatal configuration error" in log
    assert secret not in log
    assert asyncio.run(read_all(kafka, dlq, timeout_s=3)) == []


def wait_for_readiness(worker, predicate, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"http://127.0.0.1:{worker.web_port}/readyz", timeout=2).json()
            if predicate(body):
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"readiness never matched; last {body}; log:\n{worker.log()[-3000:]}")


def test_user_properties_go_when_they_change_and_again_after_a_dead_letter_and_pii_is_counted(
    kafka, amplitude, topic_names, worker_factory
):
    from devkit.amplitude import Faults

    service, url = amplitude
    service.faults = Faults(invalid_insert_ids={"e1"})  # Amplitude refuses the user's first event
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1}))

    def body(n: int, plan: str) -> bytes:
        event = {
            "event_code": "MOE_EMAIL_SENT",
            "event_uuid": f"e{n}",
            "event_time": 1_700_000_000 + n,
            "uid": "customer-1",
            "email_id": " Jane@Example.com ",
            "event_attributes": {"campaign_id": "c1"},
            "user_attributes": {"plan": plan, "city": "Paris"},
        }
        return orjson.dumps({"events": [event]})

    env = {
        **worker_env(kafka, url, source, dlq, group),
        "FORWARDER_USER_PROPERTIES": "plan,city:setOnce",
        "FORWARDER_PII": "moe_email_id:sha256",
        "FORWARDER_PII_SALT": "pepper",
    }
    worker = worker_factory(**env).start()
    asyncio.run(produce(kafka, source, [body(1, "gold")]))
    assert asyncio.run(wait_until_committed(kafka, source, group, 60, worker.alive)) == {0: 1}
    asyncio.run(produce(kafka, source, [body(2, "gold"), body(3, "gold"), body(4, "platinum")]))
    assert asyncio.run(wait_until_committed(kafka, source, group, 60, worker.alive)) == {0: 4}
    metrics = worker.metrics()
    assert worker.stop() == 0

    carried = {e["insert_id"]: e.get("user_properties") for e in service.recorder.events}
    assert carried == {
        "e2": {"$set": {"plan": "gold"}, "$setOnce": {"city": "Paris"}},  # sent again: e1 was dead-lettered
        "e3": None,
        "e4": {"$set": {"plan": "platinum"}},
    }
    dead = asyncio.run(read_all(kafka, dlq, expected=1))
    assert len(dead) == 1
    assert all(b"Jane@Example.com" not in value for _, value in dead[0].headers)
    hashed = {e["event_properties"]["moe_email_id"] for e in service.recorder.events}
    assert len(hashed) == 1
    assert "@" not in hashed.pop()
    assert 'forwarder_pii_total{action="sha256",property="moe_email_id"} 4.0' in metrics.splitlines()
