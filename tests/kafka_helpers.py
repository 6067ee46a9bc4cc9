"""Produce and read records on the real broker (aiokafka, no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from devkit.traffic import streams_requests
from forwarder.kafka.admin import create_topics


async def produce(
    servers: str, topic: str, values: Iterable[bytes], keys: Iterable[bytes | None] | None = None
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=servers, acks="all", enable_idempotence=True, max_request_size=16 * 1024 * 1024
    )
    await producer.start()
    try:
        key_list = list(keys) if keys is not None else None
        futures = [
            await producer.send(topic, value, key=None if key_list is None else key_list[i])
            for i, value in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(
    servers: str, topic: str, expected: int | None = None, timeout_s: float = 20
) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning (stops at ``expected`` or when nothing more arrives)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        idle = 0
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got = [r for rs in batch.values() for r in rs]
            records.extend(got)
            if expected is not None and len(records) >= expected:
                break
            idle = 0 if got else idle + 1
            if expected is None and idle >= 4:
                break
    finally:
        await consumer.stop()
    return records


def one_partition_of_streams(
    kafka: str, topic_names: Callable[[str], str], seed: int, events: int = 300
) -> tuple[str, str, str, list[dict[str, Any]]]:
    """A one-partition source topic holding ``events`` sample events in bodies of 10, its dead-letter topic and a
    group name: (source, dlq, group, bodies)."""
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1}))
    bodies = list(streams_requests(events, per_request=10, seed=seed))
    asyncio.run(produce(kafka, source, [orjson.dumps(b) for b in bodies]))
    return source, dlq, group, bodies
