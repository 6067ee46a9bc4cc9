"""Assemble, from events the core encoded once, request bodies that respect the API's count and size limits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import orjson

from forwarder.amplitude.limits import ApiLimits


class BodyBuilder:
    """Builds ``{"api_key": .., "events": [..], "options": ..}`` from pre-encoded events."""

    def __init__(self, api_key: str, min_id_length: int | None) -> None:
        self._head = b'{"api_key":' + orjson.dumps(api_key) + b',"events":['
        options = b""
        if min_id_length is not None:
            options = b',"options":' + orjson.dumps({"min_id_length": min_id_length})
        self._tail = b"]" + options + b"}"
        self.overhead = len(self._head) + len(self._tail)

    def body(self, encoded: Sequence[bytes]) -> bytes:
        return self._head + b",".join(encoded) + self._tail


def chunk_indexes(
    sizes: Sequence[int], indexes: Sequence[int], limits: ApiLimits, overhead: int
) -> Iterator[list[int]]:
    """Split ``indexes`` into runs that fit one request. A single event over the size limit gets a run of its
    own: the server's 413 then rejects it alone."""
    run: list[int] = []
    size = overhead
    for index in indexes:
        event_size = sizes[index] + 1  # the comma
        if run and (len(run) >= limits.max_events or size + event_size > limits.max_body_bytes):
            yield run
            run, size = [], overhead
        run.append(index)
        size += event_size
    if run:
        yield run
