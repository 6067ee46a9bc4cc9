"""``forwarder replay`` and ``replay-dlq`` on the real broker with the local Amplitude service."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from devkit.amplitude import ServiceThread
from forwarder.core import Forwarded, MappingRules, process_event
from forwarder.ingest.app import RefusedBodies, create_ingest_app
from forwarder.intake.auth import Credentials
from forwarder.intake.sink import KafkaSink
from forwarder.kafka.admin import create_topics
from forwarder.kafka.dead_letters import DeadLetterRecord, DeadLetterWriter, SourceRef, header_map, lost_range_record
from forwarder.kafka.order import OffsetRange
from tests.helpers import run_forwarder
from tests.kafka_helpers import produce, read_all

pytestmark = pytest.mark.kafka
BASE = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())  # events every minute from here


def events(count: int, prefix: str) -> list[dict]:  # type: ignore[type-arg]
    return [
        {
            "event_code": "MOE_EMAIL_SENT",
            "event_uuid": f"{prefix}-{i}",
            "uid": f"customer-{i:05d}",
            "event_time": BASE + 60 * i,
            "event_attributes": {"campaign_id": "c1"},
        }
        for i in range(count)
    ]


@pytest.fixture
def setup(kafka, amplitude, topic_names):
    service, url = amplitude
    source, dlq = topic_names("src"), topic_names("dlq")
    asyncio.run(create_topics(kafka, {source: 3, dlq: 1}))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "FORWARDER_SOURCE_TOPIC": source,
        "FORWARDER_DLQ_TOPIC": dlq,
        "FORWARDER_LEDGER_TOPIC": source + "-ledger",
        "FORWARDER_GROUP_ID": topic_names("grp"),
        "AMPLITUDE_API_KEY": "test-key",
        "AMPLITUDE_API_URL": url,
    }
    return service, env, source, dlq


def test_a_window_replay_sends_exactly_the_events_in_from_to_with_the_live_insert_ids(kafka, setup) -> None:
    service, env, source, _ = setup
    sample = events(300, "w")  # 300 minutes: 00:00 .. 04:59
    asyncio.run(produce(kafka, source, [orjson.dumps({"events": sample[i : i + 30]}) for i in range(0, 300, 30)]))

    result = run_forwarder(env, "replay", "--from", "2026-11-01T01:00:00Z", "--to", "2026-11-01T02:30:00Z")
    assert result.returncode == 0, result.stderr[-2000:]
    expected = [e for e in sample if BASE + 3600 <= e["event_time"] < BASE + 9000]
    live_ids = set()
    for event in expected:
        outcome = process_event(event, MappingRules())
        assert isinstance(outcome, Forwarded)
        live_ids.add(outcome.event["insert_id"])
    assert set(service.recorder.by_insert_id) == live_ids
    assert len(live_ids) == 90
    assert service.recorder.responses == {200: service.recorder.requests}
    assert "delivered 90" in result.stdout


def test_dry_run_sends_nothing_and_reports_what_it_would_send(kafka, setup) -> None:
    service, env, source, _ = setup
    asyncio.run(produce(kafka, source, [orjson.dumps({"events": events(120, "d")})]))
    result = run_forwarder(env, "replay", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-01T01:00:00Z", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would send 60 events" in result.stdout
    assert service.recorder.requests == 0


def test_an_interrupted_replay_resumes_without_resending_beyond_the_in_flight_batch(kafka, setup) -> None:
    service, env, source, _ = setup
    sample = events(3000, "i")
    asyncio.run(produce(kafka, source, [orjson.dumps({"events": [e]}) for e in sample]))
    args = ["replay", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-04T00:00:00Z", "--rate", "1000"]
    env = {**env, "FORWARDER_BATCH_MAX_MESSAGES": "100"}
    first = subprocess.Popen(
        [sys.executable, "-m", "forwarder", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while service.recorder.accepted < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    interrupted_at = service.recorder.accepted
    assert 0 < interrupted_at < 3000

    second = run_forwarder(env, *args)
    assert second.returncode == 0, second.stderr[-2000:]
    counts = service.recorder.by_insert_id
    assert set(counts) == {e["event_uuid"] for e in sample}
    resent = sum(counts.values()) - len(counts)
    print(
        f"\nreplay killed after {interrupted_at} events and run again: {resent} re-sent "
        f"(batch = 100 messages = 100 events)"
    )
    assert resent <= 100


def write_dead_letters(kafka: str, dlq: str, letters: list[DeadLetterRecord]) -> None:
    async def write() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
        await producer.start()
        try:
            await DeadLetterWriter(producer, dlq, 900_000).write(letters)
        finally:
            await producer.stop()

    asyncio.run(write())


def test_replay_dlq_delivers_fixed_dead_letters_and_keeps_the_broken_ones_once(kafka, setup) -> None:
    service, env, source, dlq = setup
    good = events(5, "dl")

    ref = SourceRef(source, 0, 7, b"k")
    dead = [DeadLetterRecord(orjson.dumps(e), ref, "invalid_key", status=400) for e in good]
    dead.append(DeadLetterRecord(b"{broken json", ref, "invalid_json"))
    write_dead_letters(kafka, dlq, dead)
    dry = run_forwarder(env, "replay-dlq", "--dry-run")
    assert "would send 5 events" in dry.stdout
    assert service.recorder.requests == 0

    result = run_forwarder(env, "replay-dlq")
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(service.recorder.by_insert_id) == {e["event_uuid"] for e in good}
    letters = asyncio.run(read_all(kafka, dlq, expected=7))
    reasons = [header_map(r.headers)["reason"] for r in letters]
    assert reasons.count("invalid_json") == 2  # the original, and once more after this run: not a loop

    again = run_forwarder(env, "replay-dlq")  # a second run sees only what the first one dead-lettered again
    assert re.search(r"read 1 events in 1 messages", again.stdout), again.stdout
    assert len(asyncio.run(read_all(kafka, dlq, expected=8))) == 8
    assert sum(service.recorder.by_insert_id.values()) == 5


def test_replay_dlq_skips_records_of_offsets_lost_to_retention(kafka, setup) -> None:
    """Their bytes are gone: re-processing the range's description as an event would invent a dead letter."""
    service, env, source, dlq = setup
    good = events(1, "after-loss")

    lost = lost_range_record(OffsetRange(source, 0, 5, 19), 604_800_000)
    write_dead_letters(kafka, dlq, [lost, DeadLetterRecord(orjson.dumps(good[0]), SourceRef(source, 0, 20, b"k"), "x")])
    result = run_forwarder(env, "replay-dlq")
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(service.recorder.by_insert_id) == {"after-loss-0"}
    assert "deleted before they were read" in result.stderr
    assert len(asyncio.run(read_all(kafka, dlq, expected=3, timeout_s=5))) == 2  # nothing new dead-lettered


def test_bodies_ingest_refused_are_dead_letters_like_any_other(kafka, setup, tmp_path) -> None:
    """A body that is not a JSON object is answered 400 and kept in the dead-letter topic: ``replay-dlq``
    re-processes it (an array of events, which the worker reads, is delivered; a truncated body is dead-lettered
    again, once) and ``transform`` reads its bytes."""
    service, env, source, dlq = setup
    ingest = create_ingest_app(
        KafkaSink(kafka, source, 5, max_request_bytes=2_000_000),
        Credentials.parse(None, None),
        refused=RefusedBodies(dlq),
    )
    runner = ServiceThread(ingest)
    url = runner.start() + "/moengage/streams"
    try:
        array = orjson.dumps(events(2, "array"))
        truncated = orjson.dumps({"events": events(3, "cut")})[:-40]
        for body in (array, truncated):
            answer = httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=10)
            assert answer.status_code == 400
    finally:
        runner.stop()
    letters = asyncio.run(read_all(kafka, dlq, expected=2))
    assert sorted(header_map(r.headers)["reason"] for r in letters) == ["invalid_json", "not_streams"]

    result = run_forwarder(env, "replay-dlq")
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(service.recorder.by_insert_id) == {"array-0", "array-1"}
    again = asyncio.run(read_all(kafka, dlq, expected=3))
    assert [header_map(r.headers)["reason"] for r in again].count("invalid_json") == 2  # dead-lettered once more

    kept = tmp_path / "refused.json"
    kept.write_bytes(next(r.value for r in letters if header_map(r.headers)["reason"] == "invalid_json"))
    transformed = run_forwarder(env, "transform", str(kept))
    assert "invalid_json" in transformed.stdout + transformed.stderr
