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


@dataclass(frozen=True, slots=True)
class Decoded:
    events: list[Any]
    # Bytes that were not UTF-8 were replaced with U+FFFD: the events are kept, and the repair is counted.
    repaired: bool = False
    # The Streams body's ``moe_request_id``, so a repair can be traced to MoEngage's request.
    request_id: str | None = None
    # The Streams envelope's ``app_name`` (which MoEngage app sent it): it chooses the route.
    app_name: str | None = None


def is_event(obj: object) -> bool:
    return isinstance(obj, dict) and ("event_code" in obj or "event_name" in obj)


def is_export_record(obj: object) -> bool:
    """A MoEngage data export line: ``{"export_doc_id": ..., "event": {...the Streams event...}}``."""
    return isinstance(obj, dict) and isinstance(obj.get("event"), dict) and not is_event(obj)


def load_json(raw: bytes) -> tuple[Any, bool] | DecodeError:
    """(document, repaired). Bytes that are not UTF-8 (a cp1252 apostrophe in a user name) become U+FFFD
    rather than costing the whole batch; only input that is not JSON even then is refused."""
    try:
        # orjson validates UTF-8 itself and refuses nesting deeper than 1024 levels with an error, not a
        # stack overflow.
        return orjson.loads(raw), False
    except orjson.JSONDecodeError as exc:
        error = exc
    # Only now tell the two apart: decoding every message up front cost a copy of each.
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return orjson.loads(raw.decode("utf-8", "replace")), True
        except orjson.JSONDecodeError as again:
            error = again
    return DecodeError("invalid_json", str(error)[:200])


def events_of(document: Any) -> list[Any] | DecodeError:
    """The events a JSON document carries: a Streams request body, one event, or an array of either.

    Elements that are not event objects are returned as they are; the pipeline marks each one invalid,
    so one bad element never hides its neighbours.
    """
    if isinstance(document, dict):
        if "events" in document:
            source = document.get("source")
            if source is not None and not (isinstance(source, str) and source.casefold() == "moengage"):
                return DecodeError("not_streams", f"the body's source is {str(source)[:40]!r}, not MoEngage")
            events = document["events"]
            if not isinstance(events, list):
                return DecodeError("not_streams", f"'events' must be an array, got {type(events).__name__}")
            if not events:
                return DecodeError("not_streams", "'events' is empty")
            return events
        if is_event(document):
            return [document]
        if is_export_record(document):
            return [document["event"]]
        return DecodeError("not_streams", "object is neither a Streams request body, an event nor an export record")
    if isinstance(document, list):
        flat: list[Any] = []
        for item in document:
            if isinstance(item, dict) and "events" in item:
                inner = events_of(item)
                if isinstance(inner, DecodeError):
                    flat.append(item)
                else:
                    flat.extend(inner)
            elif is_export_record(item):
                flat.append(item["event"])
            else:
                flat.append(item)
        return flat
    return DecodeError("not_streams", f"expected a JSON object or array, got {type(document).__name__}")


def decode_message(raw: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Decoded | DecodeError:
    if len(raw) > max_bytes:
        return DecodeError("too_large", f"message is {len(raw)} bytes, the limit is {max_bytes}")
    loaded = load_json(raw)
    if isinstance(loaded, DecodeError):
        return loaded
    document, repaired = loaded
    events = events_of(document)
    if isinstance(events, DecodeError):
        return events
    app_name = document.get("app_name") if isinstance(document, dict) else None
    app_name = app_name if isinstance(app_name, str) else None
    if not repaired:
        return Decoded(events, app_name=app_name)
    request_id = document.get("moe_request_id") if isinstance(document, dict) else None
    return Decoded(events, True, request_id if isinstance(request_id, str) else None, app_name)
