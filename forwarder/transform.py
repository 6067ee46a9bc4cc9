"""``forwarder transform``: the pure core over a file, for dry runs and for checking a captured payload."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import IO, Any

import orjson

from forwarder.core.decode import DecodeError, events_of
from forwarder.core.outcomes import Forwarded, Invalid, Outcome, OutcomeCounts
from forwarder.core.pipeline import MappingRules, process_event


def _documents(data: bytes, errors: IO[str]) -> Iterator[tuple[int, Any]]:
    """(line number, JSON document): the whole input as one document, else JSON Lines."""
    try:
        yield 1, orjson.loads(data)
        return
    except orjson.JSONDecodeError:
        pass
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            print(f"line {number}: invalid JSON: {str(exc)[:120]}", file=errors)
            yield number, _INVALID_JSON


_INVALID_JSON = object()


def transform(data: bytes, rules: MappingRules, out: IO[bytes], errors: IO[str]) -> OutcomeCounts:
    counts = OutcomeCounts()
    position = 0
    for line, document in _documents(data, errors):
        outcomes: list[Outcome]
        if document is _INVALID_JSON:
            outcomes = [Invalid(None, "invalid_json")]
        else:
            events = events_of(document)
            if isinstance(events, DecodeError):
                print(f"line {line}: {events.detail}", file=errors)
                outcomes = [Invalid(None, events.reason, events.detail)]
            else:
                outcomes = [process_event(event, rules) for event in events]
        for outcome in outcomes:
            position += 1
            counts.add(outcome)
            if isinstance(outcome, Forwarded):
                out.write(outcome.encoded + b"\n")
                for warning in outcome.warnings:
                    print(f"event {position} ({outcome.code}): {warning}", file=errors)
            elif isinstance(outcome, Invalid) and document is not _INVALID_JSON and outcome.detail:
                print(f"event {position}: invalid ({outcome.reason}): {outcome.detail}", file=errors)
    return counts


def read_input(path: str | None) -> bytes:
    if path is None or path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()
