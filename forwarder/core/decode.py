"""Bytes -> MoEngage event objects. Decides what a message is; never raises on bad input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# A Streams batch of 100 events is ~100 KB; 1 MiB leaves room and matches Kafka's default message size.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DecodeError:
    reason: str
    detail: str


def is_event(obj: object) -> bool:
    return isinstance(obj, dict) and ("event_code" in obj or "event_name" in obj)


def events_of(document: Any) -> list[Any] | DecodeError:
    """The events a JSON document carries: a Streams request body, one event, or an array of either.

    Elements that are not event objects are returned as they are; the pipeline marks each one invalid,
    so one bad element never hides its neighbours.
    """
    if isinstance(document, dict):
        if "events" in document:
            events = document["events"]
            if not isinstance(events, list):
                return DecodeError("wrong_type", f"'events' must be an array, got {type(events).__name__}")
            return events
        if is_event(document):
            return [document]
        return DecodeError("not_streams", "object is neither a Streams request body nor an event")
    if isinstance(document, list):
        flat: list[Any] = []
        for item in document:
            if isinstance(item, dict) and "events" in item:
                inner = events_of(item)
                if isinstance(inner, DecodeError):
                    flat.append(item)
                else:
                    flat.extend(inner)
            else:
                flat.append(item)
        return flat
    return DecodeError("not_streams", f"expected a JSON object or array, got {type(document).__name__}")


def decode_message(raw: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[Any] | DecodeError:
    if len(raw) > max_bytes:
        return DecodeError("too_large", f"message is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        # orjson validates UTF-8 itself and refuses nesting deeper than 1024 levels with an error, not a
        # stack overflow.
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # Only now tell the two apart: decoding every message up front cost a copy of each.
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return DecodeError("not_utf8", f"byte {bad.start} is not UTF-8")
        return DecodeError("invalid_json", str(exc)[:200])
    return events_of(document)
