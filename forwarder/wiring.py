"""The composition root: the one place that builds the processing stack from settings.

Kafka producer (dead letters, parked events, the ledger) -> Amplitude client -> delivery policy -> lanes ->
``BatchProcessor``. The worker, ``replay``, ``replay-dlq`` and ``backfill`` all get theirs here, so a change to
how the stack is built is made once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from forwarder.amplitude.client import AmplitudeClient
from forwarder.amplitude.delivery import Deliverer
from forwarder.amplitude.lanes import Lanes
from forwarder.amplitude.limits import LIMITS
from forwarder.core.pipeline import MappingRules
from forwarder.core.property_memory import PropertyMemory
from forwarder.kafka.dead_letters import DeadLetterSink, DeadLetterWriter, FileDeadLetterWriter
from forwarder.kafka.ledger import LedgerWriter
from forwarder.kafka.producer import started_producer
from forwarder.processing import BatchProcessor
from forwarder.settings import ForwarderSettings, SettingsError
from forwarder.worker.metrics import Metrics


@dataclass(frozen=True)
class Stack:
    processor: BatchProcessor
    # Where dead letters go, for summaries: "the topic NAME" or a file path.
    dead_letters_at: str


@contextlib.asynccontextmanager
async def processing_stack(
    settings: ForwarderSettings,
    rules: MappingRules,
    *,
    api: str | None = None,
    metrics: Metrics | None = None,
    on_answer: Callable[[str, float], None] | None = None,
    park_throttled: bool = False,
    dead_letters_file: Path | None = None,
    source: str = "stream",
) -> AsyncIterator[Stack]:
    """``park_throttled``: the worker's way, throttled events wait in the retry topic instead of in place (a
    replay or backfill has no live traffic to hold back). ``dead_letters_file``: where dead letters go when
    no Kafka is configured (``backfill``; then there is no ledger either). ``on_answer(status, seconds)``: each
    Amplitude answer. ``source``: what the ledger calls these runs (``stream``, ``retry``, ``replay`` ...)."""
    key = settings.amplitude.api_key
    if key is None:
        raise SettingsError("invalid settings:\n  AMPLITUDE_API_KEY: is required but not set")
    api = api or settings.amplitude.api
    producer: AIOKafkaProducer | None = None
    if settings.kafka.bootstrap_servers:
        producer = await started_producer(settings, settings.topics.dlq_max_value_bytes)
    client = AmplitudeClient(
        settings.amplitude.endpoint(api),
        key,
        timeout_s=settings.amplitude.timeout_s,
        min_id_length=settings.amplitude.min_id_length if settings.amplitude.min_id_length < 5 else None,
        observer=on_answer,
    )
    lanes: Lanes | None = None
    try:
        dead_letters: DeadLetterSink
        if producer is not None:
            dead_letters = DeadLetterWriter(producer, settings.topics.dlq_topic, settings.topics.dlq_max_value_bytes)
            where = f"the topic {settings.topics.dlq_topic}"
        elif dead_letters_file is not None:
            dead_letters = FileDeadLetterWriter(str(dead_letters_file))
            where = str(dead_letters_file)
        else:
            raise SettingsError("invalid settings:\n  KAFKA_BOOTSTRAP_SERVERS: is required but not set")
        parked = None
        if park_throttled:
            if producer is None:
                raise SettingsError("invalid settings:\n  KAFKA_BOOTSTRAP_SERVERS: is required but not set")
            parked = DeadLetterWriter(producer, settings.topics.retry_topic, settings.topics.dlq_max_value_bytes)
        deliverer = Deliverer(client, LIMITS[api], asyncio.sleep, defer_throttled=park_throttled)
        lanes = Lanes(deliverer, settings.worker.max_in_flight, LIMITS[api].max_events)
        processor = BatchProcessor(
            rules,
            lanes,
            dead_letters,
            metrics or Metrics(),
            retries=parked,
            ledger=LedgerWriter(producer, settings.topics.ledger_topic) if producer is not None else None,
            source=source,
            memory=PropertyMemory(settings.properties.user_properties_cache) if rules.user_properties else None,
        )
        yield Stack(processor, where)
    finally:
        if lanes is not None:
            await lanes.aclose()
        await client.aclose()
        if producer is not None:
            await producer.stop()
