"""``python -m tests.worker.unguarded worker``: the worker with its offset guard only watching, for measuring what
faust skips without it (``STORM_GUARD=off`` in ``tests/worker/test_storm.py``). Never used by the product.

Every record faust hands over is processed, as before the guard; a record past the next expected offset of its
partition is logged (``unguarded: the consumer skipped records``) and not repaired. The ordered commit stays, so a
skip shows as a commit that cannot reach the end. ``UNGUARDED_DROP`` makes such a skip on purpose
(``tests/worker/test_commit_blocked.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from forwarder.cli import main
from forwarder.kafka.order import OffsetGuard

log = logging.getLogger("forwarder.order")


def _watched(guard: OffsetGuard) -> dict[tuple[str, int], int]:
    watched: dict[tuple[str, int], int] = guard.__dict__.setdefault("_watched", {})
    return watched


def _drop() -> tuple[int, int] | None:
    """``UNGUARDED_DROP=partition:offset``: that record is dropped the first time it is handed over, as faust was seen
    to drop records (a hole made on purpose)."""
    value = os.environ.get("UNGUARDED_DROP")
    if not value:
        return None
    partition, offset = value.split(":")
    return int(partition), int(offset)


DROP = _drop()
dropped: set[tuple[int, int]] = set()


async def watch_only(self: OffsetGuard, batch: Sequence[Any]) -> list[Any]:
    seen = _watched(self)
    kept = []
    for taken in batch:
        message = taken.message
        if (message.partition, message.offset) == DROP and DROP not in dropped:
            dropped.add(DROP)
            log.warning("unguarded: dropping a record on purpose", extra={"fields": {"offset": message.offset}})
            continue
        kept.append(taken)
        key = (message.topic, message.partition)
        last = seen.get(key)
        if last is None:
            last = await self._consumer.reading_start(message.topic, message.partition, message.offset) - 1
        if message.offset > last + 1:
            log.warning(
                "unguarded: the consumer skipped records",
                extra={"fields": {"topic": key[0], "partition": key[1], "first": last + 1, "got": message.offset}},
            )
        seen[key] = max(last, message.offset)
    return kept


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
