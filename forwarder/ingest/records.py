"""A Streams request body -> Kafka records: one per destination partition, each a Streams body.

Whatever a JSON object holds is stored; the worker gives each event its outcome (a bad one is dead-lettered with
its reason, its neighbours delivered).

Each event goes to the partition Kafka's default partitioner picks for its user key (``partition_key``), so
one user's events stay in one partition in MoEngage's order, exactly as if each were its own keyed record;
grouping them per partition makes a 100-event batch a handful of records instead of a hundred (the
producer's per-record cost is what limits ingestion).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from forwarder.core.decode import DecodeError, events_of, load_json
from forwarder.core.keys import partition_key


class NotStreamsRequest(ValueError):
    """The body is not a JSON object: 400 (MoEngage's retry may bring an intact copy), and a dead letter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # invalid_json or not_streams, as the worker would say


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    # The first event's user key: kept for tools that read keys; the partition was chosen per event.
    key: bytes
    value: bytes
    events: int


@dataclass(frozen=True, slots=True)
class Batch:
    """A JSON object body: its envelope and its events with their user keys; or, when it has no usable events list
    or is not from MoEngage, the body as it came (``whole``), for the worker to dead-letter with its reason."""

    envelope: dict[str, Any]
    events: list[Any]
    keys: list[bytes]
    # Bytes that were not UTF-8 became U+FFFD: the records are stored as valid UTF-8, the repair counted.
    repaired: bool = False
    whole: bytes | None = None

    def records(self, partition_of: Callable[[bytes], int]) -> list[Record]:
        if self.whole is not None:
            return [Record(partition_of(b""), b"", self.whole, 0)]
        groups: dict[int, tuple[bytes, list[Any]]] = {}
        for key, event in zip(self.keys, self.events, strict=True):
            groups.setdefault(partition_of(key), (key, []))[1].append(event)
        return [
            Record(partition, key, orjson.dumps({**self.envelope, "events": grouped}), len(grouped))
            for partition, (key, grouped) in groups.items()
        ]


def parse_batch(body: bytes) -> Batch:
    """Every JSON object is stored: the worker judges each event (one bad event must not cost its batch, which
    MoEngage drops after three refused retries). Only a body that is not a JSON object is refused."""
    loaded = load_json(body)
    if isinstance(loaded, DecodeError):
        raise NotStreamsRequest("invalid_json", f"the body is not valid JSON: {loaded.detail[:120]}")
    document, repaired = loaded
    if not isinstance(document, dict):
        raise NotStreamsRequest("not_streams", f"expected a JSON object, got {type(document).__name__}")
    envelope = {k: v for k, v in document.items() if k != "events"}
    events = events_of(document) if "events" in document else None
    if events is None or isinstance(events, DecodeError):
        # No usable events list, or not MoEngage's (one not_streams dead letter per body), or one flat event or
        # export line (the worker reads those too): stored as it came, as valid UTF-8.
        return Batch(envelope, [], [], repaired, whole=orjson.dumps(document) if repaired else body)
    return Batch(envelope, events, [partition_key(event) for event in events], repaired)
