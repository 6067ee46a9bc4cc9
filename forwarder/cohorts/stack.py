"""The cohort half's composition root: the MoEngage client and the producer of dead letters and status records."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from forwarder.cohorts.moengage import MoEngageClient
from forwarder.kafka.dead_letters import DeadLetterWriter
from forwarder.kafka.producer import started_producer
from forwarder.settings import CohortWorkerSettings


@dataclass(frozen=True)
class CohortStack:
    client: MoEngageClient
    dead_letters: DeadLetterWriter
    producer: AIOKafkaProducer


@contextlib.asynccontextmanager
async def cohort_stack(
    settings: CohortWorkerSettings, on_answer: Callable[[str, float], None] | None = None
) -> AsyncIterator[CohortStack]:
    cohorts, moengage = settings.cohorts, settings.moengage
    producer = await started_producer(settings, cohorts.dlq_max_value_bytes)
    client = MoEngageClient(
        moengage.base_url,
        moengage.workspace_id,
        moengage.data_api_key,
        max_requests_per_minute=moengage.max_requests_per_minute,
        timeout_s=moengage.timeout_s,
        observer=on_answer,
    )
    try:
        yield CohortStack(client, DeadLetterWriter(producer, cohorts.dlq_topic, cohorts.dlq_max_value_bytes), producer)
    finally:
        await client.aclose()
        await producer.stop()
