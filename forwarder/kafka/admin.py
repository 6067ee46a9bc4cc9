"""Kafka questions the tools ask: create topics, where a group has committed, where partitions end, what a
topic holds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.structs import ConsumerRecord

Connection = str | dict[str, Any]


def options_of(connection: Connection) -> dict[str, Any]:
    """Bootstrap servers alone (tests, local broker), or the full options of ``kafka_security.client_options``."""
    return {"bootstrap_servers": connection} if isinstance(connection, str) else dict(connection)


async def create_topic(admin: AIOKafkaAdminClient, topic: NewTopic) -> bool:
    """True when created, False when it already existed; raises on any other error.

    aiokafka answers with error codes rather than raising, so a failed create would otherwise pass unseen.
    """
    response = await admin.create_topics([topic])
    for _name, code, *rest in response.topic_errors:
        if code == TopicAlreadyExistsError.errno:
            return False
        if code != 0:
            message = rest[0] if rest else ""
            raise for_code(code)(f"creating topic {topic.name!r}: {message}")
    return True


async def create_topics(
    connection: Connection, topics: dict[str, int], replication: int = 1, config: dict[str, str] | None = None
) -> None:
    """Creates each missing topic with its partition count; existing topics are left as they are."""
    admin = AIOKafkaAdminClient(**options_of(connection))
    await admin.start()
    try:
        for name, partitions in topics.items():
            await create_topic(admin, NewTopic(name, partitions, replication, topic_configs=dict(config or {})))
    finally:
        await admin.close()


async def partition_offsets(
    connection: Connection, topic: str, group: str | None = None
) -> tuple[dict[int, int], dict[int, int]]:
    """(end offsets, committed offsets of ``group``) per partition; no commit -> 0."""
    consumer = AIOKafkaConsumer(**options_of(connection), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = await consumer.end_offsets(tps) if tps else {}
        committed: dict[int, int] = {}
        if group is not None:
            for tp in tps:
                committed[tp.partition] = (await consumer.committed(tp)) or 0
        return {tp.partition: offset for tp, offset in ends.items()}, committed
    finally:
        await consumer.stop()


class KafkaUnavailable(Exception):
    """Kafka cannot be used with these settings: unreachable, or the credentials were refused."""


class _Remember(logging.Handler):
    """Keeps aiokafka's last connection complaint: its exceptions say less than its log does."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Authentication" in message or "Sasl" in message or "SSL" in message:
            self.last = message.split(": ", 1)[-1][:200]


async def preflight(connection: Connection, timeout_s: float = 30.0) -> None:
    """Connects once, so a wrong address or password fails at start-up with a clear line, not a retry loop."""
    options = options_of(connection)
    described = f"{options['bootstrap_servers']} ({options.get('security_protocol', 'PLAINTEXT')}"
    if options.get("sasl_mechanism"):
        described += f", SASL {options['sasl_mechanism']} as {options.get('sasl_plain_username')!r}"
    described += ")"
    remember = _Remember()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(remember)
    # Its connection complaints become our one line below, not a second one before it.
    propagate, aiokafka_log.propagate = aiokafka_log.propagate, False
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout=timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout=timeout_s)
    except (KafkaError, TimeoutError, OSError) as exc:
        reason = remember.last or type(exc).__name__
        raise KafkaUnavailable(f"cannot use Kafka at {described}: {reason}") from None
    finally:
        aiokafka_log.removeHandler(remember)
        aiokafka_log.propagate = propagate
        await admin.close()


async def broker_count(connection: Connection) -> int:
    admin = AIOKafkaAdminClient(**options_of(connection))
    await admin.start()
    try:
        return len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()


async def read_to_end(connection: Connection, topic: str, missing: str) -> AsyncIterator[ConsumerRecord]:
    """Every record of ``topic`` up to the end offsets seen at the start, partition by partition as fetched.
    Joins no group and commits nothing; raises ``LookupError(missing)`` when the topic does not exist."""
    consumer = AIOKafkaConsumer(**options_of(connection), enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(missing)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            for tp, messages in fetched.items():
                for message in messages:
                    if message.offset < ends[tp]:
                        yield message
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
