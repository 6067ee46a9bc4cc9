"""Records Kafka deletes before the worker reads them: counted, logged and dead-lettered, exactly, on a real broker.

DeleteRecords moves a partition's log start exactly as retention does, without waiting for it.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from devkit.observe import wait_until_committed
from forwarder.kafka.admin import create_topics
from forwarder.kafka.dead_letters import header_map
from tests.kafka_helpers import read_all
from tests.worker.test_worker_delivery import worker_env

pytestmark = pytest.mark.kafka


def event(tag: str, n: int) -> bytes:
    return orjson.dumps(
        {"event_code": "SMS_SENT", "event_uuid": f"{tag}-{n}", "uid": f"customer-{tag}-{n:04d}", "event_time": 1.7e9}
    )


async def produce_to(servers: str, topic: str, partition: int, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, v, partition=partition) for v in values])
    finally:
        await producer.stop()


async def delete_before(servers: str, topic: str, offsets: dict[int, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, p): RecordsToDelete(o) for p, o in offsets.items()})
    finally:
        await admin.close()


def metric(text: str, name: str, **labels: object) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_records_deleted_while_the_worker_was_stopped_are_reported_exactly(
    kafka, amplitude, topic_names, worker_factory
):
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 2, dlq: 1}))
    env = worker_env(kafka, url, source, dlq, group)

    # Offsets 0-4 of each partition are delivered and committed.
    asyncio.run(produce_to(kafka, source, 0, [event("p0", n) for n in range(5)]))
    asyncio.run(produce_to(kafka, source, 1, [event("p1", n) for n in range(5)]))
    worker = worker_factory(**env).start()
    asyncio.run(wait_until_committed(kafka, source, group, 120, worker.alive))
    assert worker.stop() == 0

    # While it is stopped: p0 gets offsets 5-24 and loses 5-19; p1 gets 5-14 and loses all of them.
    asyncio.run(produce_to(kafka, source, 0, [event("p0", n) for n in range(5, 25)]))
    asyncio.run(produce_to(kafka, source, 1, [event("p1", n) for n in range(5, 15)]))
    asyncio.run(delete_before(kafka, source, {0: 20, 1: 15}))

    worker = worker_factory(**env).start()
    deadline = time.monotonic() + 90
    text = ""
    while time.monotonic() < deadline:
        try:
            text = worker.metrics()
        except httpx.TransportError:  # its web server is not up yet
            time.sleep(0.5)
            continue
        lost = [metric(text, "forwarder_offsets_lost_total", topic=source, partition=p) for p in (0, 1)]
        lags = [metric(text, "forwarder_consumer_lag", topic=source, partition=p) for p in (0, 1)]
        if lost == [15.0, 10.0] and lags == [0.0, 0.0]:
            break
        time.sleep(0.5)
    log = worker.log()
    assert worker.stop() == 0
    assert [metric(text, "forwarder_offsets_lost_total", topic=source, partition=p) for p in (0, 1)] == [15.0, 10.0]
    assert [metric(text, "forwarder_consumer_lag", topic=source, partition=p) for p in (0, 1)] == [0.0, 0.0]

    # What survived is delivered; what was deleted is not pretended delivered.
    delivered = set(service.recorder.by_insert_id)
    assert {f"p0-{n}" for n in range(20, 25)} <= delivered
    assert not {f"p0-{n}" for n in range(5, 20)} & delivered

    errors = [orjson.loads(line) for line in log.splitlines() if "deleted by Kafka before they were read" in line]
    assert sorted((e["partition"], e["first_offset"], e["last_offset"], e["count"]) for e in errors) == [
        (0, 5, 19, 15),
        (1, 5, 14, 10),
    ]
    assert all(e["level"] == "error" and e["topic"] == source and e["retention_ms"] == 604800000 for e in errors)

    letters = asyncio.run(read_all(kafka, dlq, expected=2))
    headers = sorted(
        (int(h["source_partition"]), int(h["first_offset"]), int(h["last_offset"]), h["reason"])
        for h in (header_map(r.headers) for r in letters)
    )
    assert headers == [(0, 5, 19, "lost_to_retention"), (1, 5, 14, "lost_to_retention")]
    assert sorted(orjson.loads(r.value)["count"] for r in letters) == [10, 15]
    print(f"\nlost to retention: {[(e['partition'], e['first_offset'], e['last_offset']) for e in errors]}")


def test_records_deleted_while_the_worker_is_held_up_are_either_delivered_or_reported_lost(
    kafka, amplitude, topic_names, worker_factory
):
    """An Amplitude outage holds the worker; Kafka deletes part of the backlog it had not fetched yet.

    What it had already fetched is in memory and must be delivered, not reported lost; what it had not must be
    reported, exactly once: together, every offset.
    """
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1}))
    env = worker_env(kafka, url, source, dlq, group)
    padding = "x" * 9_000  # ~10 KB records: the client prefetches about 1 MB, far less than the backlog

    def big(n: int) -> bytes:
        return orjson.dumps(
            {
                "event_code": "SMS_SENT",
                "event_uuid": f"big-{n}",
                "uid": f"customer-{n:05d}",
                "event_time": 1.7e9,
                "event_attributes": {"note": padding},
            }
        )

    service.faults.outage_until = time.time() + 3600
    worker = worker_factory(**env, FORWARDER_BATCH_MAX_MESSAGES="5").start()
    asyncio.run(produce_to(kafka, source, 0, [big(n) for n in range(1000)]))
    deadline = time.monotonic() + 60
    while service.recorder.responses[503] < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert service.recorder.responses[503] >= 3, worker.log()[-3000:]
    # While held up, the gauge shows the age of the oldest record in hand (records written seconds ago).
    age = None
    deadline = time.monotonic() + 15  # the watchdog looks every 5 s
    while not age and time.monotonic() < deadline:
        age = metric(worker.metrics(), "forwarder_oldest_unprocessed_age_seconds", topic=source, partition=0)
        time.sleep(0.5)
    assert age is not None
    assert 0 < age < 600
    asyncio.run(delete_before(kafka, source, {0: 500}))
    service.faults.outage_until = 0.0

    asyncio.run(wait_until_committed(kafka, source, group, 120, worker.alive))
    text, lost_line = "", None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = worker.metrics()
        lost_line = metric(text, "forwarder_offsets_lost_total", topic=source, partition=0)
        if lost_line is not None:
            break
        time.sleep(0.5)
    log = worker.log()
    assert worker.stop() == 0

    delivered = {int(i.split("-")[1]) for i in service.recorder.by_insert_id}
    errors = [orjson.loads(line) for line in log.splitlines() if "deleted by Kafka before they were read" in line]
    assert len(errors) == 1, errors
    lost = set(range(errors[0]["first_offset"], errors[0]["last_offset"] + 1))
    assert errors[0]["last_offset"] == 499
    assert not delivered & lost  # nothing counted twice
    assert delivered | lost == set(range(1000))  # nothing missing
    assert lost_line == float(len(lost))
    letters = asyncio.run(read_all(kafka, dlq, expected=1))
    assert [(h["reason"], h["first_offset"], h["last_offset"]) for h in (header_map(r.headers) for r in letters)] == [
        ("lost_to_retention", str(min(lost)), "499")
    ]
    print(f"\nheld-up worker: {len(delivered)} delivered (fetched before the deletion), {len(lost)} reported lost")
