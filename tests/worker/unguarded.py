"""``python -m tests.worker.unguarded worker``: the worker with its offset guard only watching, for measuring what
faust skips without it (``STORM_GUARD=off`` in ``tests/worker/test_storm.py``). Never used by the product.

Every record faust hands over is processed, as before the guard; a record past the next expected offset of its
partition is logged (``unguarded: the consumer skipped records``) and not repaired. The ordered commit stays, so a
skip shows as a commit that cannot reach the end.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from forwarder.cli import main
from forwarder.kafka.order import OffsetGuard

log = logging.getLogger("forwarder.order")


def _watched(guard: OffsetGuard) -> dict[tuple[str, int], int]:
    watched: dict[tuple[str, int], int] = guard.__dict__.setdefault("_watched", {})
    return watched


async def watch_only(self: OffsetGuard, batch: Sequence[Any]) -> list[Any]:
    seen = _watched(self)
    for taken in batch:
        message = taken.message
        key = (message.topic, message.partition)
        last = seen.get(key)
        if last is None:
            start = await self._consumer.reading_start(message.topic, message.partition)
            last = None if start is None else start - 1
        if last is not None and message.offset > last + 1:
            log.warning(
                "unguarded: the consumer skipped records",
                extra={"fields": {"topic": key[0], "partition": key[1], "first": last + 1, "got": message.offset}},
            )
        seen[key] = message.offset if last is None else max(last, message.offset)
    return list(batch)


def holds(self: OffsetGuard, topic: str, partition: int) -> bool:
    return (topic, partition) in _watched(self)


def forget(self: OffsetGuard, partitions: Any) -> None:
    watched = _watched(self)
    for key in partitions:
        watched.pop(key, None)


OffsetGuard.admit_all = watch_only  # type: ignore[method-assign]
OffsetGuard.holds = holds  # type: ignore[method-assign]
OffsetGuard.forget = forget  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
