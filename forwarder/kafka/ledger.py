"""The ledger topic: written by every run before it is acknowledged, read whole by ``forwarder report``."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from forwarder.kafka.admin import Connection, read_to_end
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
    missing = f"the ledger topic {topic!r} does not exist: run `forwarder topics` to create it"
    found: list[tuple[int, int, int, LedgerRecord]] = []
    skipped = 0
    async for message in read_to_end(connection, topic, missing):
        try:
            record = LedgerRecord.decode(message.value or b"")
        except LedgerFormatError as exc:
            skipped += 1
            log.warning(
                "skipping a ledger record this version cannot read",
                extra={"fields": {"partition": message.partition, "offset": message.offset, "why": str(exc)}},
            )
            continue
        found.append((message.timestamp, message.partition, message.offset, record))
    found.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in found], skipped
