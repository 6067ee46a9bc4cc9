"""Kafka questions the tools ask: create topics, where a group has committed, where partitions end."""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def create_topics(
    servers: str, topics: dict[str, int], replication: int = 1, config: dict[str, str] | None = None
) -> None:
    """Creates each missing topic with its partition count; existing topics are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        for name, partitions in topics.items():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(name, partitions, replication, topic_configs=dict(config or {}))])
    finally:
        await admin.close()


async def partition_offsets(
    servers: str, topic: str, group: str | None = None
) -> tuple[dict[int, int], dict[int, int]]:
    """(end offsets, committed offsets of ``group``) per partition; no commit -> 0."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False)
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
