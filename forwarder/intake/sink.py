"""The producer behind the HTTP door: started on demand, so the service starts while Kafka is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from forwarder.kafka.admin import Connection, options_of

# What the door answers 503 for (MoEngage and Amplitude retry): Kafka did not acknowledge in time.
KAFKA_FAILURES = (KafkaError, TimeoutError, OSError)


class Placed(Protocol):
    """One record of a body, on the partition its key chose."""

    @property
    def partition(self) -> int: ...
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...
    @property
    def events(self) -> int: ...


class Splits(Protocol):
    """A body that becomes records, given Kafka's partitioner (``forwarder.ingest.records.Batch``)."""

    def records(self, partition_of: Callable[[bytes], int]) -> Sequence[Placed]: ...


class KafkaSink:
    """An idempotent producer that is (re)started on demand, so the service starts while Kafka is down."""

    def __init__(self, connection: Connection, topic: str, timeout_s: float, max_request_bytes: int) -> None:
        self._options = options_of(connection)
        self.topic = topic
        self.timeout_s = timeout_s
        self._max_request_bytes = max_request_bytes
        self._producer: AIOKafkaProducer | None = None
        # Kafka's default (murmur2) partitioner: the partition a keyed record would get.
        self._partitioner = DefaultPartitioner()
        self._lock = asyncio.Lock()
        self.last_ok = 0.0
        self.last_error = ""

    async def ensure(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **self._options,
                    acks="all",
                    enable_idempotence=True,
                    max_request_size=self._max_request_bytes,
                    request_timeout_ms=int(self.timeout_s * 1000),
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def store(self, batch: Splits, headers: list[tuple[str, bytes]]) -> int:
        """Returns the number of events once Kafka acknowledged every record; raises otherwise."""

        # Each record carries the time it was received, never the events' own times: Kafka's retention deletes by
        # record timestamp, so a batch of old events (a backfill, a late retry) stamped with their event times
        # could be deleted before the worker reads it.
        received_ms = int(time.time() * 1000)

        async def send_all() -> int:
            producer = await self.ensure()
            partitions = sorted(await producer.partitions_for(self.topic))
            records = batch.records(lambda key: self._partitioner(key, partitions, partitions))
            futures = [
                await producer.send(
                    self.topic,
                    r.value,
                    key=r.key,
                    partition=r.partition,
                    headers=headers,
                    timestamp_ms=received_ms,
                )
                for r in records
            ]
            await asyncio.gather(*futures)
            return sum(r.events for r in records)

        events = await asyncio.wait_for(send_all(), timeout=self.timeout_s)
        self.last_ok = time.time()
        return events

    async def store_record(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """One record, returned once Kafka acknowledged it; raises otherwise."""

        async def send() -> None:
            producer = await self.ensure()
            await (await producer.send(topic, value, key=key, headers=headers))

        await asyncio.wait_for(send(), timeout=self.timeout_s)
        self.last_ok = time.time()

    async def reachable(self) -> None:
        """Asks a broker for the cluster's metadata; raises while none answers (``/readyz`` then says 503, so a load
        balancer stops sending batches this pod can only refuse)."""

        async def ask() -> None:
            producer = await self.ensure()
            await producer.client.fetch_all_metadata()

        await asyncio.wait_for(ask(), timeout=self.timeout_s)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
