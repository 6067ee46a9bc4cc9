"""Faults the promise must survive, on a real Apache Kafka broker with the local Amplitude service."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from devkit.kafka import LocalKafka
from devkit.observe import scrape_outcomes, wait_until_committed
from devkit.traffic import streams_requests
from forwarder.core import Dropped, Filtered, Forwarded, MappingRules, process_event
from forwarder.core.keys import partition_key
from forwarder.kafka.admin import create_topics, partition_offsets
from forwarder.kafka.dead_letters import header_map
from forwarder.kafka.ledger import read_ledger
from tests.kafka_helpers import produce, read_all
from tests.worker.test_worker_delivery import worker_env

pytestmark = pytest.mark.kafka


def sendable(events: list[dict]) -> set[str]:  # type: ignore[type-arg]
    return {
        e["event_uuid"]
        for e in events
        if e["event_code"] != "ADD_TO_CART"
        and (e["uid"] or e["user_attributes"].get("moe_anonymous_id"))
        and not (e["uid"] == "u1" and "moe_anonymous_id" not in e["user_attributes"])
    }


def publish(kafka: str, topic: str, total: int, per_request: int, seed: int) -> list[dict]:  # type: ignore[type-arg]
    bodies = list(streams_requests(total, per_request=per_request, seed=seed))
    asyncio.run(
        produce(kafka, topic, [orjson.dumps(b) for b in bodies], [partition_key(b["events"][0]) for b in bodies])
    )
    return [e for b in bodies for e in b["events"]]


def test_crash_sigkill_three_times_loses_nothing(kafka, amplitude, topic_names, worker_factory):
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 4, dlq: 1}))
    events = publish(kafka, source, 20_000, 100, seed=3)
    deliverable = sendable(events)
    rejected = set(random.Random(1).sample(sorted(deliverable), 25))
    service.faults.invalid_insert_ids = rejected
    service.faults.latency_s = 0.05  # slow enough that the kills land mid-run

    # Commits every 30 s, and each life is killed once it has written two ledger records: every kill lands after
    # runs were recorded and before their commit, so the next life re-processes them (what the ledger must count
    # once). Killing at a count of accepted events instead could land before any run of the life had finished.
    env = {**worker_env(kafka, url, source, dlq, group), "FORWARDER_COMMIT_INTERVAL_S": "30"}
    ledger_topic = env["FORWARDER_LEDGER_TOPIC"]

    def ledger_records() -> int:
        ends, _ = asyncio.run(partition_offsets(kafka, ledger_topic))
        return sum(ends.values())

    kills = 0
    worker = worker_factory(**env).start()
    for _ in range(3):
        recorded, accepted_before = ledger_records(), service.recorder.accepted
        deadline = time.monotonic() + 120
        while ledger_records() < recorded + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ledger_records() >= recorded + 2, worker.log()[-3000:]
        assert service.recorder.accepted > accepted_before
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        kills += 1
        worker = worker_factory(**env).start()
    asyncio.run(wait_until_committed(kafka, source, group, 300, worker.alive))
    assert worker.stop() == 0

    accepted = set(service.recorder.by_insert_id)
    assert accepted == deliverable - rejected  # every deliverable event accepted at least once, nothing missing
    letters = asyncio.run(read_all(kafka, dlq, expected=len(rejected)))
    lettered = {orjson.loads(r.value)["event_uuid"]: header_map(r.headers) for r in letters}
    assert set(lettered) == rejected  # every rejected event dead-lettered (at least once)
    assert all(h["reason"] == "invalid_field:event_properties" and h["http_status"] == "400" for h in lettered.values())
    duplicates = service.recorder.accepted - len(accepted)

    # The ledger: re-processed runs wrote their records again, and the report still counts every event once,
    # under the outcome the core gives it (row by row, by event code).
    written, _ = asyncio.run(read_ledger(kafka, env["FORWARDER_LEDGER_TOPIC"]))
    naive = sum(r.outcomes.read for r in written)
    report = subprocess.run(
        [sys.executable, "-m", "forwarder", "report", "--by", "code", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    body = orjson.loads(report.stdout)
    assert body["total"]["read"] == len(events) == 20_000
    assert body["total"]["delivered"] == len(accepted)
    assert body["total"]["dead_lettered_by_reason"] == {"invalid_field:event_properties": len(rejected)}
    assert body["balance"]["holds"] is True
    expected = expected_by_code(events, rejected)
    assert {row["code"]: row_counts(row) for row in body["rows"]} == expected
    print(
        f"\ncrash test: {len(events)} events, {kills} SIGKILLs, {len(accepted)} delivered, "
        f"{len(rejected)} dead-lettered, {duplicates} duplicates re-sent after kills "
        f"(Amplitude drops them by insert_id); ledger: {len(written)} records holding {naive} events, "
        f"{body['superseded_records']} superseded, report counts {body['total']['read']}"
    )
    assert kills == 3
    assert naive > len(events)
    assert body["superseded_records"] > 0


def row_counts(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("delivered", "filtered_by_reason", "dropped_by_reason", "dead_lettered_by_reason")}


def expected_by_code(events: list[dict], rejected: set[str]) -> dict[str, dict[str, Any]]:  # type: ignore[type-arg]
    """What the pure core makes of each event, with the rejected ones dead-lettered by Amplitude's 400."""
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        outcome = process_event(event, MappingRules())
        row = rows.setdefault(
            outcome.code or "(no event code)",
            {"delivered": 0, "filtered_by_reason": {}, "dropped_by_reason": {}, "dead_lettered_by_reason": {}},
        )
        if isinstance(outcome, Forwarded):
            if event["event_uuid"] in rejected:
                reasons = row["dead_lettered_by_reason"]
                reasons["invalid_field:event_properties"] = reasons.get("invalid_field:event_properties", 0) + 1
            else:
                row["delivered"] += 1
        else:
            kind = {Filtered: "filtered_by_reason", Dropped: "dropped_by_reason"}[type(outcome)]
            row[kind][outcome.reason] = row[kind].get(outcome.reason, 0) + 1
    return rows


def test_outage_pauses_without_loss_or_rebalance_and_recovers_by_itself(kafka, amplitude, topic_names, worker_factory):
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 2, dlq: 1}))
    events = publish(kafka, source, 2000, 100, seed=4)
    service.faults.outage_until = time.time() + 60

    worker = worker_factory(**worker_env(kafka, url, source, dlq, group)).start()
    asyncio.run(wait_until_committed(kafka, source, group, 240, worker.alive))
    recovered_at = time.time()
    metrics = worker.metrics()
    assert worker.stop() == 0

    assert set(service.recorder.by_insert_id) == sendable(events)
    assert service.recorder.responses[503] > 3
    assignments = [line for line in metrics.splitlines() if line.startswith("forwarder_partition_assignments_total")]
    assert assignments == ["forwarder_partition_assignments_total 1.0"], "the outage caused a rebalance"
    print(
        f"\noutage test: 60 s of 503, {service.recorder.responses[503]} refused requests, "
        f"recovered {recovered_at - service.faults.outage_until:.1f} s after the outage ended"
    )


def test_a_throttled_user_does_not_hold_back_other_users(kafka, amplitude, topic_names, worker_factory):
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    retry = topic_names("retry")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1, retry: 1}))
    hot = "customer-hot-01"
    service.faults.throttled_users = {hot}
    worker = worker_factory(**worker_env(kafka, url, source, dlq, group), FORWARDER_RETRY_TOPIC=retry).start()
    # Measure from a running worker: one warm-up event, delivered, means it has joined its group.
    warm_up = {"event_code": "SMS_SENT", "event_uuid": "warm-up", "uid": "customer-warm", "event_time": 1_700_000_000}
    asyncio.run(produce(kafka, source, [orjson.dumps(warm_up)]))
    deadline = time.monotonic() + 60
    while "warm-up" not in service.recorder.by_insert_id and time.monotonic() < deadline:
        time.sleep(0.05)

    sent: dict[str, float] = {}
    for round_number in range(10):
        batch: list[dict[str, Any]] = [
            {
                "event_code": "SMS_SENT",
                "event_uuid": f"r{round_number}-{i}",
                "uid": hot if i % 2 == 0 else f"customer-{round_number:02d}-{i:03d}",
                "event_time": 1_700_000_000 + i,
            }
            for i in range(20)
        ]
        sent.update({e["event_uuid"]: time.time() for e in batch})
        asyncio.run(produce(kafka, source, [orjson.dumps({"events": batch})]))
        time.sleep(0.5)
    others = {u for u in sent if int(u.split("-")[1]) % 2 == 1}
    deadline = time.monotonic() + 30
    while not others <= set(service.recorder.by_insert_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    arrival = service.recorder.first_accepted_at
    assert others <= set(arrival), worker.log()[-3000:]
    delays = sorted(arrival[u] - sent[u] for u in others)
    p99 = delays[int(len(delays) * 0.99) - 1]
    print(
        f"\nthrottling: other users' delay p50 {delays[len(delays) // 2]:.2f} s, max {delays[-1]:.2f} s "
        f"while {hot} was throttled (pause 30 s)"
    )
    # One batch interval is FORWARDER_BATCH_WINDOW_S (0.2 s here) plus a request; anything near the 30 s
    # throttle pause would mean the hot user held everybody back.
    assert delays[-1] < 5, delays
    assert p99 < 5
    hot_events = set(sent) - others
    assert not hot_events & set(service.recorder.by_insert_id)  # still throttled

    service.faults.throttled_users = set()  # the pause is over: the hot user's events arrive from the retry topic
    asyncio.run(wait_until_committed(kafka, retry, group, 90, worker.alive))
    deadline = time.monotonic() + 60
    while not hot_events <= set(service.recorder.by_insert_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert hot_events <= set(service.recorder.by_insert_id)
    assert worker.stop() == 0


def test_sigterm_finishes_the_in_flight_batch_commits_it_and_exits_0(kafka, amplitude, topic_names, worker_factory):
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1}))
    publish(kafka, source, 400, 100, seed=8)
    service.faults.latency_s = 3  # every request takes 3 s: SIGTERM lands mid-POST
    worker = worker_factory(
        **worker_env(kafka, url, source, dlq, group),
        FORWARDER_BATCH_MAX_MESSAGES="1",
        FORWARDER_SHUTDOWN_DEADLINE_S="15",
        FORWARDER_MAX_IN_FLIGHT="1",  # one request for the message: "mid-POST" is one moment (lanes: chaos test)
    ).start()
    deadline = time.monotonic() + 60
    while service.recorder.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.recorder.requests == 1
    assert worker.stop(timeout_s=30) == 0
    accepted = set(service.recorder.by_insert_id)
    _, committed = asyncio.run(partition_offsets(kafka, source, group))
    # The in-flight batch (one message of 100 events) finished, was committed, and nothing after it was taken.
    assert committed == {0: 1}
    assert len(accepted) > 0
    assert "in-flight batch finished" in worker.log()


def test_sigterm_abandons_a_batch_that_cannot_finish_before_the_deadline(kafka, amplitude, topic_names, worker_factory):
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1}))
    publish(kafka, source, 100, 100, seed=9)
    service.faults.outage_until = time.time() + 3600
    worker = worker_factory(**worker_env(kafka, url, source, dlq, group), FORWARDER_SHUTDOWN_DEADLINE_S="2").start()
    deadline = time.monotonic() + 60
    while service.recorder.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    assert worker.stop(timeout_s=30) == 0
    print(f"\nSIGTERM during an outage: exited in {time.monotonic() - started:.1f} s (deadline 2 s)")
    _, committed = asyncio.run(partition_offsets(kafka, source, group))
    assert sum(committed.values()) == 0
    assert "abandoned" in worker.log()


def test_a_broker_restart_mid_run_loses_nothing(amplitude, topic_names, worker_factory):
    service, url = amplitude
    broker = LocalKafka()
    servers = broker.start()
    try:
        source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
        asyncio.run(create_topics(servers, {source: 2, dlq: 1}))
        events = publish(servers, source, 6000, 100, seed=10)
        service.faults.latency_s = 0.05
        worker = worker_factory(**worker_env(servers, url, source, dlq, group)).start()
        deadline = time.monotonic() + 120
        while service.recorder.accepted < 1500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.recorder.accepted >= 1500
        broker.restart()
        asyncio.run(wait_until_committed(servers, source, group, 240, worker.alive))
        totals = scrape_outcomes(f"http://127.0.0.1:{worker.web_port}/metrics")
        worker.stop()
        assert set(service.recorder.by_insert_id) == sendable(events)
        assert totals.by_outcome["delivered"] >= len(sendable(events))
    finally:
        broker.stop()
        if broker.data_dir is not None:
            shutil.rmtree(broker.data_dir, ignore_errors=True)


@pytest.mark.parametrize("after_s", [0.3, 1.0, 2.5, 5.0])
def test_sigterm_at_any_moment_of_start_up_exits_cleanly(kafka, amplitude, topic_names, worker_factory, after_s):
    """Orchestrators stop pods that are still starting (a rollout, a scale-down): that is a clean stop, not a crash."""
    _, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1}))
    worker = worker_factory(**worker_env(kafka, url, source, dlq, group)).start()
    time.sleep(after_s)
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0, worker.log()[-2000:]
