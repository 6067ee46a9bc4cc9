"""Offsets Kafka deleted before the worker read them: found from facts, never guessed.

Kafka deletes by retention whatever nobody read in time, and a consumer whose position falls below the
partition's log start is moved silently to the log start. Offsets are skipped for harmless reasons too
(transaction markers, compaction), so a skip is only a *suspect*: it becomes a loss for the part of it that lies
below the partition's log start offset, which Kafka only ever moves forward.

The watch sees the offsets the worker reaches in three ways, each at a moment when nothing of the partition is
in the worker's memory below that offset:

- ``seeked``: the partition was assigned and the consumer moved to the committed offset;
- ``pulled``: records left the Kafka client for the worker (the first of them may lie past a gap);
- ``at_position``: the client's position, when nothing is being pulled (a reset with no record after it).

Each range is reported once per process: ``confirm`` remembers how far it has reported.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from forwarder.kafka.order import OffsetRange

Partition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Suspect:
    """Offsets ``start`` up to ``end`` (excluded) were skipped; ``end`` None: up to wherever the log starts."""

    topic: str
    partition: int
    start: int
    end: int | None


class LossWatch:
    def __init__(self) -> None:
        self._next: dict[Partition, int] = {}
        self._reported: dict[Partition, int] = {}
        self._suspects: list[Suspect] = []

    def seeked(self, topic: str, partition: int, committed: int | None) -> None:
        """Assigned and moved to ``committed`` (None: the group never committed here, nothing to compare)."""
        key = (topic, partition)
        if committed is None:
            self._next.pop(key, None)
            return
        self._next[key] = committed
        self._suspect(key, committed, None)

    def pulled(self, topic: str, partition: int, first: int, last: int) -> None:
        key = (topic, partition)
        self._close(key, first)
        expected = self._next.get(key)
        if expected is not None and first > expected:
            self._suspect(key, expected, first)
        if expected is None or last + 1 > expected:
            self._next[key] = last + 1

    def at_position(self, topic: str, partition: int, position: int) -> None:
        key = (topic, partition)
        self._close(key, position)
        expected = self._next.get(key)
        if expected is not None and position > expected:
            self._suspect(key, expected, position)
            self._next[key] = position

    def take_suspects(self) -> list[Suspect]:
        suspects, self._suspects = self._suspects, []
        return suspects

    def confirm(self, suspect: Suspect, log_start: int) -> OffsetRange | None:
        """The part of ``suspect`` below ``log_start`` not reported before, or None."""
        key = (suspect.topic, suspect.partition)
        end = log_start if suspect.end is None else min(suspect.end, log_start)
        start = max(suspect.start, self._reported.get(key, 0))
        if end <= start:
            return None
        self._reported[key] = end
        return OffsetRange(suspect.topic, suspect.partition, start, end - 1)

    def unconfirm(self, lost: OffsetRange) -> None:
        """``lost`` could not be reported (the dead-letter write failed): suspect it again."""
        key = (lost.topic, lost.partition)
        if self._reported.get(key) == lost.last + 1:
            self._reported[key] = lost.first
        self._suspects.append(Suspect(lost.topic, lost.partition, lost.first, lost.last + 1))

    def _close(self, key: Partition, reached: int) -> None:
        """A seek's suspect ends where the worker next got to: what it pulls from there on is in its hands."""
        for i, suspect in enumerate(self._suspects):
            if suspect.end is None and (suspect.topic, suspect.partition) == key:
                end = max(suspect.start, reached)
                self._suspects[i] = Suspect(suspect.topic, suspect.partition, suspect.start, end)

    def _suspect(self, key: Partition, start: int, end: int | None) -> None:
        # Kept apart, not merged: records read between two skips must not be counted with them.
        self._suspects.append(Suspect(key[0], key[1], start, end))


class PullCounter:
    """Counts the consumer's pulls of records, so a position can be compared with what was pulled before it."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self._changed = asyncio.Event()

    def begin(self) -> None:
        self.started += 1

    def end(self) -> None:
        self.finished += 1
        self._changed.set()

    async def settled(self, target: int, timeout_s: float) -> bool:
        """True once ``target`` pulls have finished; False if that takes longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.finished < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True
