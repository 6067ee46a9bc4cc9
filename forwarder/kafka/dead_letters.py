"""The dead-letter topic (and the retry topic): records that say what happened and where they came from.

The retry topic uses the same record format plus ``dlq.not_before`` (epoch ms): throttled events wait there,
out of the way of other users' events, until Amplitude's pause is over.

A record's value is the original message bytes when the whole message is bad (not JSON, not UTF-8,
too large), and the single offending event as a JSON object otherwise, so ``replay-dlq`` can re-process
exactly what failed. Headers (all UTF-8 strings) say why and from where. A value larger than the dead-letter
topic takes is left out (header ``dlq.value_omitted``): the bytes stay in the source topic at the offset
the headers name, and the record still says what happened to them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaProducer

from forwarder.kafka.order import OffsetRange

HEADER_PREFIX = "dlq."
# The route (Amplitude project) a record belongs to: written by ingest (``FORWARDER_INGEST_PATH/{route}``), on
# dead letters and on events parked in the retry topic.
ROUTE_HEADER = "forwarder.route"
# A record of source offsets Kafka deleted before they were read: its value describes the range, not an event.
LOST_TO_RETENTION = "lost_to_retention"


@dataclass(frozen=True, slots=True)
class SourceRef:
    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    value: bytes
    source: SourceRef
    reason: str
    event_index: int | None = None
    event_code: str | None = None
    status: int | None = None
    response_excerpt: str = ""
    attempts: int = 0
    detail: str = ""
    not_before_ms: int | None = None
    # A range of source offsets (records lost to retention): ``source.offset`` is the first, this the last.
    last_offset: int | None = None
    route: str | None = None

    def headers(self, value_omitted: bool = False) -> list[tuple[str, bytes]]:
        fields = {
            "value_omitted": f"{len(self.value)} bytes; read them from the source offset" if value_omitted else "",
            "source_topic": self.source.topic,
            "source_partition": str(self.source.partition),
            "source_offset": str(self.source.offset),
            "reason": self.reason,
            "event_index": "" if self.event_index is None else str(self.event_index),
            "event_code": self.event_code or "",
            "http_status": "" if self.status is None else str(self.status),
            "response": self.response_excerpt,
            "detail": self.detail[:500],
            "attempts": str(self.attempts),
            "dead_lettered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "not_before": "" if self.not_before_ms is None else str(self.not_before_ms),
            "first_offset": "" if self.last_offset is None else str(self.source.offset),
            "last_offset": "" if self.last_offset is None else str(self.last_offset),
        }
        headers = [(HEADER_PREFIX + k, v.encode()) for k, v in fields.items() if v != ""]
        if self.route:
            headers.append((ROUTE_HEADER, self.route.encode()))
        return headers


def route_of(headers: Any) -> str | None:
    """The route a Kafka record's headers name (a list of pairs, or faust's dict), or None."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    for key, value in pairs:
        if key == ROUTE_HEADER and value:
            return bytes(value).decode("utf-8", "replace")
    return None


def header_map(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    return {k[len(HEADER_PREFIX) :]: v.decode("utf-8", "replace") for k, v in headers if k.startswith(HEADER_PREFIX)}


class DeadLetterSink(Protocol):
    """Where dead letters are stored: returns once they are, so a dead letter counts only once it is kept."""

    async def write(self, records: list[DeadLetterRecord]) -> None: ...


class DeadLetterWriter:
    """Writes and waits for the broker's acknowledgement: a dead letter counts only once it is stored."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, max_value_bytes: int) -> None:
        self._producer = producer
        self.topic = topic
        self.max_value_bytes = max_value_bytes

    async def write(self, records: list[DeadLetterRecord]) -> None:
        sending = [await self._send(record) for record in records]
        await asyncio.gather(*sending)

    async def _send(self, record: DeadLetterRecord) -> asyncio.Future[object]:
        """A value over the limit is left out (header ``dlq.value_omitted``); its bytes stay at the source."""
        omitted = len(record.value) > self.max_value_bytes
        value = b"" if omitted else record.value
        sent: asyncio.Future[object] = await self._producer.send(
            self.topic, value=value, key=record.source.key, headers=record.headers(omitted)
        )
        return sent


class FileDeadLetterWriter:
    """Dead letters as JSON Lines in a file, for commands run without Kafka (``backfill`` from files).

    One object per record: ``headers`` as in the topic (without the ``dlq.`` prefix), ``key`` and ``value`` as
    UTF-8 text when they are, else base64 under ``value_base64``. Appended and flushed to disk before returning.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    async def write(self, records: list[DeadLetterRecord]) -> None:
        if not records:
            return
        lines = []
        for record in records:
            entry: dict[str, object] = {"headers": header_map(record.headers())}
            try:
                entry["value"] = record.value.decode("utf-8")
            except UnicodeDecodeError:
                entry["value_base64"] = base64.b64encode(record.value).decode()
            lines.append(orjson.dumps(entry))
        await asyncio.to_thread(self._append, b"\n".join(lines) + b"\n")

    def _append(self, data: bytes) -> None:
        with open(self.path, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def lost_range_record(lost: OffsetRange, retention_ms: int | None) -> DeadLetterRecord:
    """One dead letter per lost range: the bytes are gone, so its value says what was lost."""
    value = orjson.dumps(lost.loss_fields(retention_ms))
    key = f"{lost.topic}/{lost.partition}/{lost.first}-{lost.last}".encode()
    return DeadLetterRecord(
        value,
        SourceRef(lost.topic, lost.partition, lost.first, key),
        LOST_TO_RETENTION,
        last_offset=lost.last,
        detail=f"{lost.count} records deleted by Kafka before they were read",
    )
