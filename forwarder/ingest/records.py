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
from pydantic import ValidationError

from forwarder.core.decode import DecodeError, load_json
from forwarder.core.keys import partition_key
from schemas.moengage import StreamsRequest


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
    # Bytes that were not UTF-8 became U+FFFD: the records are stored as valid UTF-8, the repair counted.
    repaired: bool = False

    def records(self, partition_of: Callable[[bytes], int]) -> list[Record]:
        groups: dict[int, tuple[bytes, list[Any]]] = {}
        for key, event in zip(self.keys, self.events, strict=True):
            groups.setdefault(partition_of(key), (key, []))[1].append(event)
        return [
            Record(partition, key, orjson.dumps({**self.envelope, "events": grouped}), len(grouped))
            for partition, (key, grouped) in groups.items()
        ]


def _problem(error: ValidationError) -> str:
    """The first problem, in words an integrator can act on; never the input itself."""
    problem = error.errors(include_input=False, include_url=False)[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"]).lstrip(".")
    kind, message = problem["type"], problem["msg"].removeprefix("Value error, ")
    if where == "events" and kind in ("too_short", "list_type", "missing"):
        return "'events' must be a non-empty array"
    if kind == "dict_type":
        return f"{where} must be an object"
    if where == "events" and kind == "value_error":
        return message
    return f"'{where}' {message}" if where else message


def parse_batch(body: bytes) -> Batch:
    loaded = load_json(body)
    if isinstance(loaded, DecodeError):
        raise NotStreamsRequest(f"the body is not valid JSON: {loaded.detail[:120]}")
    document, repaired = loaded
    if not isinstance(document, dict):
        raise NotStreamsRequest(f"expected a JSON object, got {type(document).__name__}")
    try:
        request = StreamsRequest.model_validate(document)
    except ValidationError as exc:
        raise NotStreamsRequest(_problem(exc)) from None
    events = request.events
    envelope = {k: v for k, v in document.items() if k != "events"}
    return Batch(envelope, events, [partition_key(event) for event in events], repaired)
