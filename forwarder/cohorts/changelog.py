"""The cohort table's store, written through with batched changelog records.

faust writes a table's changelog through its producer buffer, which sends one record at a time and which the
commit waits to drain: measured with a 200,000-member snapshot, about 2,600 records a second, and every pending
record held in memory (the worker peaked at 1.1 GB with 2,000,000 members). Here reads and writes go straight to
the table's in-memory store (``table.data``, the mapping faust's recovery fills from the changelog), and the
changelog records, in the format faust's own writes have (raw key, raw value, ``None`` to delete, the partition of
the record being processed), are sent by an idempotent producer in batches and awaited before the record is
acknowledged. faust still creates the changelog topic, recovers the table on start and after a rebalance, and
commits offsets. ``tests/cohorts/test_changelog.py`` fails when the faust code this relies on changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from forwarder.cohorts.state import MEMBER_SEPARATOR, META_SEPARATOR


class ChangelogStore(MutableMapping[bytes, bytes]):
    def __init__(self, data: MutableMapping[bytes, bytes], producer: AIOKafkaProducer, topic: str) -> None:
        self._data = data
        self._producer = producer
        self.topic = topic
        # The partition of the record being processed: its cohort's state lives in the same changelog partition.
        self.partition = 0
        self._pending: list[tuple[bytes, bytes | None]] = []

    def __getitem__(self, key: bytes) -> bytes:
        return self._data[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._data[key] = value
        self._pending.append((key, value))

    def __delitem__(self, key: bytes) -> None:
        del self._data[key]
        self._pending.append((key, None))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def unflushed(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Every change so far is in the changelog (acknowledged by all in-sync replicas) when this returns."""
        pending, self._pending = self._pending, []
        send = self._producer.send
        futures = [await send(self.topic, value, key=key, partition=self.partition) for key, value in pending]
        if futures:
            await asyncio.gather(*futures)

    def forget_partitions(self, gone: set[int], partitions: int) -> int:
        """Drop the keys of cohorts whose records live in ``gone`` (a rebalance took them): their new owner
        recovers them, and this worker's memory shrinks. Returns how many keys were dropped."""
        partitioner = DefaultPartitioner()
        every = list(range(partitions))
        owner: dict[bytes, int] = {}
        dropped = [key for key in list(self._data) if _partition(_cohort_of(key), owner, partitioner, every) in gone]
        for key in dropped:
            del self._data[key]
        return len(dropped)


def _cohort_of(key: bytes) -> bytes:
    for separator in (MEMBER_SEPARATOR.encode(), META_SEPARATOR.encode()):
        if separator in key:
            return key.split(separator, 1)[0]
    return key


def _partition(cohort: bytes, known: dict[bytes, int], partitioner: DefaultPartitioner, every: list[int]) -> int:
    """The partition a record keyed by ``cohort`` goes to (Kafka's default partitioner, as ingest and pull use)."""
    if cohort not in known:
        known[cohort] = partitioner(cohort, every, every)
    return known[cohort]
