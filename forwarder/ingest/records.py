"""A Streams request body -> Kafka records: one per destination partition, each a Streams body.

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

from forwarder.core.keys import partition_key


class NotStreamsRequest(ValueError):
    """The body is not a MoEngage Streams request: 400, with this message."""


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    # The first event's user key: kept for tools that read keys; the partition was chosen per event.
    key: bytes
    value: bytes
    events: int


@dataclass(frozen=True, slots=True)
class Batch:
    """A validated Streams request: its envelope and its events with their user keys."""

    envelope: dict[str, Any]
    events: list[dict[str, Any]]
    keys: list[bytes]

    def records(self, partition_of: Callable[[bytes], int]) -> list[Record]:
        groups: dict[int, tuple[bytes, list[Any]]] = {}
        for key, event in zip(self.keys, self.events, strict=True):
            groups.setdefault(partition_of(key), (key, []))[1].append(event)
        return [
            Record(partition, key, orjson.dumps({**self.envelope, "events": grouped}), len(grouped))
            for partition, (key, grouped) in groups.items()
        ]


def parse_batch(body: bytes) -> Batch:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotStreamsRequest(f"the body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(document, dict):
        raise NotStreamsRequest(f"expected a JSON object, got {type(document).__name__}")
    events = document.get("events")
    if not isinstance(events, list) or not events:
        raise NotStreamsRequest("'events' must be a non-empty array")
    source = document.get("source")
    if source is not None and (not isinstance(source, str) or source.casefold() != "moengage"):
        raise NotStreamsRequest("'source' must be MoEngage")
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise NotStreamsRequest(f"events[{index}] must be an object, got {type(event).__name__}")
        if "event_code" not in event and "event_name" not in event:
            raise NotStreamsRequest(f"events[{index}] has neither event_code nor event_name")
    envelope = {k: v for k, v in document.items() if k != "events"}
    return Batch(envelope, events, [partition_key(event) for event in events])
