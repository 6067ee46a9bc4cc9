"""Is the worker moving? What it took, what it is still working on, and how old the oldest of that is.

A worker can be alive and not reading (faust's tracker lists several ways; shared/spec/faust-delivery.md). Lag
alone cannot tell that from a slow worker, and an idle agent alone cannot tell it from an empty topic: a stall is
lag on a partition of which nothing was taken for ``timeout_s`` while no batch holding its records is being
worked on (delivering, retrying through an outage, or waiting for throttled events to fall due). The clock is per
partition: one that faust stopped handing over is stalled even while its neighbours are read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

Partition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Stall:
    partitions: tuple[Partition, ...]
    idle_s: float

    def describe(self) -> str:
        names = ", ".join(f"{topic}/{partition}" for topic, partition in self.partitions)
        return f"no message taken for {self.idle_s:.0f} s while partitions have lag: {names}"


class Progress:
    def __init__(self, stall_timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_timeout_s = stall_timeout_s
        self.clock = clock
        self._started = clock()
        self._last_taken: dict[Partition, float] = {}
        self._busy: dict[Partition, int] = {}
        # Per partition: the record timestamp (epoch s) of the first message of the batch being worked on.
        self._oldest: dict[Partition, float] = {}

    def assigned(self, partitions: Iterable[Partition]) -> None:
        """Newly assigned partitions' clocks start now."""
        now = self.clock()
        for key in partitions:
            self._last_taken[key] = now

    def taken(self, topic: str, records: Iterable[tuple[int, float | None]]) -> None:
        """A batch of ``topic`` was taken: its (partition, record timestamp) pairs, in offset order."""
        now = self.clock()
        for partition, timestamp in records:
            self._last_taken[topic, partition] = now
            if timestamp is not None and (topic, partition) not in self._oldest:
                self._oldest[topic, partition] = timestamp

    def finished(self, topic: str) -> None:
        """Every message of the topic's batch has its final outcome."""
        for key in [key for key in self._oldest if key[0] == topic]:
            del self._oldest[key]

    @contextlib.contextmanager
    def working(self, topic: str, partitions: Iterable[int]) -> Iterator[None]:
        """A batch holding records of these partitions is being worked on."""
        keys = [(topic, partition) for partition in set(partitions)]
        for key in keys:
            self._busy[key] = self._busy.get(key, 0) + 1
        try:
            yield
        finally:
            now = self.clock()
            for key in keys:
                self._busy[key] -= 1
                self._last_taken[key] = now  # the stall clock runs from the end of the work

    def oldest_age_s(self, topic: str, partition: int, now_epoch_s: float) -> float:
        """Age of the oldest record read and not yet final on the partition; 0 when none is in hand."""
        timestamp = self._oldest.get((topic, partition))
        return 0.0 if timestamp is None else max(0.0, now_epoch_s - timestamp)

    def stall(self, lag: Mapping[Partition, int]) -> Stall | None:
        """The partitions with lag whose agent is idle and has taken nothing for the timeout, or None."""
        now = self.clock()
        stuck: list[Partition] = []
        idle_s = 0.0
        for key, behind in sorted(lag.items()):
            if behind <= 0 or self._busy.get(key, 0):
                continue
            idle = now - self._last_taken.get(key, self._started)
            if idle >= self.stall_timeout_s:
                stuck.append(key)
                idle_s = max(idle_s, idle)
        return Stall(tuple(stuck), idle_s) if stuck else None
