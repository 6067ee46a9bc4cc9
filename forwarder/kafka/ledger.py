"""The ledger topic: written by every run before it is acknowledged, read whole by ``forwarder report``."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from forwarder.kafka.admin import Connection, options_of
from forwarder.ledger.records import LedgerFormatError, LedgerRecord

log = logging.getLogger("forwarder.ledger")


class LedgerWriter:
    """Writes a run's records and waits for the broker: the run is acknowledged only once they are stored."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    async def write(self, records: list[LedgerRecord]) -> None:
        futures = [await self._producer.send(self.topic, value=record.encode(), key=record.key) for record in records]
        await asyncio.gather(*futures)


async def read_ledger(connection: Connection, topic: str) -> tuple[list[LedgerRecord], int]:
    """(every record in the order written, how many values could not be read). Reads up to the end offsets
    seen at the start; joins no group and commits nothing."""
    consumer = AIOKafkaConsumer(**options_of(connection), enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"the ledger topic {topic!r} does not exist: run `forwarder topics` to create it")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        found: list[tuple[int, int, int, LedgerRecord]] = []
        skipped = 0
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            for tp, messages in fetched.items():
                for message in messages:
                    if message.offset >= ends[tp]:
                        continue
                    try:
                        record = LedgerRecord.decode(message.value or b"")
                    except LedgerFormatError as exc:
                        skipped += 1
                        log.warning(
                            "skipping a ledger record this version cannot read",
                            extra={"fields": {"partition": tp.partition, "offset": message.offset, "why": str(exc)}},
                        )
                        continue
                    found.append((message.timestamp, tp.partition, message.offset, record))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        found.sort(key=lambda entry: entry[:3])
        return [entry[3] for entry in found], skipped
    finally:
        await consumer.stop()
