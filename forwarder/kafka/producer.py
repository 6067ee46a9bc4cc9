"""The one way the product builds a Kafka producer of its own (dead letters, parked events, ledger, changelog)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from forwarder.kafka.security import client_options
from forwarder.settings import HasKafka


async def started_producer(settings: HasKafka, max_value_bytes: int) -> AIOKafkaProducer:
    """Idempotent, acks from all in-sync replicas; room for the largest value plus its headers."""
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        max_request_size=max_value_bytes + 64 * 1024,
    )
    await producer.start()
    return producer
