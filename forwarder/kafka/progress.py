"""Is the worker moving? What it took, what it is still working on, and how old the oldest of that is.

A worker can be alive and not reading (faust's tracker lists several ways; shared/spec/faust-delivery.md). Lag
alone cannot tell that from a slow worker, and an idle agent alone cannot tell it from an empty topic: a stall is
lag on a partition of which nothing was taken for ``timeout_s`` while no batch holding its records is being
worked on (delivering, retrying through an outage, or waiting for throttled events to fall due). The clock is per
partition: one that faust stopped handing over is stalled even while its neighbours are read.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from forwarder.health import Health
from forwarder.kafka.order import OffsetRange
from forwarder.kafka.order_metrics import OffsetMetrics

log = logging.getLogger("forwarder.watchdog")

Partition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Stall:
    partitions: tuple[Partition, ...]
    idle_s: float

    def describe(self) -> str:
        names = ", ".join(f"{topic}/{partition}" for topic, partition in self.partitions)
        return f"no message taken for {self.idle_s:.0f} s while partitions have lag: {names}"


class Progress:
    def __init__(
        self, stall_timeout_s: float, clock: Callable[[], float] = time.monotonic, one_at_a_time: bool = False
    ) -> None:
        """``one_at_a_time``: the agent works through one record at a time (the cohort worker), so a partition may
        wait behind another's long sync: only an agent idle for the timeout, with lag, is stalled."""
        self.stall_timeout_s = stall_timeout_s
        self.clock = clock
        self._one_at_a_time = one_at_a_time
        self._started = clock()
        self._last_taken: dict[Partition, float] = {}
        self._busy: dict[Partition, int] = {}
        # Per partition: the record timestamp (epoch s) of the first message of each batch in hand, by batch (None:
        # the batch of ``taken``/``finished``; else a ``Hand``), in the order taken.
        self._oldest: dict[Partition, dict[object, float]] = {}

    def assigned(self, partitions: Iterable[Partition]) -> None:
        """Newly assigned partitions' clocks start now."""
        now = self.clock()
        for key in partitions:
            self._last_taken[key] = now

    def taken(self, topic: str, records: Iterable[tuple[int, float | None]]) -> None:
        """A batch of ``topic`` was taken: its (partition, record timestamp) pairs, in offset order."""
        self._take(topic, records, None)

    def _take(self, topic: str, records: Iterable[tuple[int, float | None]], batch: object) -> None:
        now = self.clock()
        for partition, timestamp in records:
            self._last_taken[topic, partition] = now
            if timestamp is not None:
                self._oldest.setdefault((topic, partition), {}).setdefault(batch, timestamp)

    def finished(self, topic: str) -> None:
        """Every message of the topic's batches has its final outcome."""
        for key in [key for key in self._oldest if key[0] == topic]:
            del self._oldest[key]

    def hand(self, topic: str, records: Sequence[tuple[int, float | None]]) -> Hand:
        """A batch taken and worked on until ``Hand.done``, which may come after later batches were taken (the
        worker's runs in flight carry over): ``taken`` and ``working`` for this one batch."""
        hand = Hand(self, topic, {partition for partition, _ in records})
        self._take(topic, records, hand)
        self._start([(topic, partition) for partition in hand.partitions])
        return hand

    def _done(self, hand: Hand) -> None:
        keys = [(hand.topic, partition) for partition in hand.partitions]
        self._end(keys)
        for key in keys:
            batches = self._oldest.get(key)
            if batches is not None:
                batches.pop(hand, None)
                if not batches:
                    del self._oldest[key]

    def _start(self, keys: Iterable[Partition]) -> None:
        for key in keys:
            self._busy[key] = self._busy.get(key, 0) + 1

    def _end(self, keys: Iterable[Partition]) -> None:
        now = self.clock()
        for key in keys:
            self._busy[key] -= 1
            self._last_taken[key] = now  # the stall clock runs from the end of the work

    @contextlib.contextmanager
    def working(self, topic: str, partitions: Iterable[int]) -> Iterator[None]:
        """A batch holding records of these partitions is being worked on."""
        keys = [(topic, partition) for partition in set(partitions)]
        self._start(keys)
        try:
            yield
        finally:
            self._end(keys)

    def oldest_age_s(self, topic: str, partition: int, now_epoch_s: float) -> float:
        """Age of the oldest record read and not yet final on the partition; 0 when none is in hand."""
        batches = self._oldest.get((topic, partition))
        return max(0.0, now_epoch_s - min(batches.values())) if batches else 0.0

    def stall(self, lag: Mapping[Partition, int]) -> Stall | None:
        """The partitions with lag whose agent is idle and has taken nothing for the timeout, or None."""
        now = self.clock()
        stuck: list[Partition] = []
        idle_s = 0.0
        if self._one_at_a_time and any(self._busy.values()):
            return None
        agent_last = max(self._last_taken.values(), default=self._started)
        for key, behind in sorted(lag.items()):
            if behind <= 0 or self._busy.get(key, 0):
                continue
            last = self._last_taken.get(key, self._started)
            idle = now - (max(last, agent_last) if self._one_at_a_time else last)
            if idle >= self.stall_timeout_s:
                stuck.append(key)
                idle_s = max(idle_s, idle)
        return Stall(tuple(stuck), idle_s) if stuck else None


@dataclass(eq=False)
class Hand:
    """One batch in hand (``Progress.hand``)."""

    progress: Progress
    topic: str
    partitions: set[int]
    _done: bool = False

    def done(self) -> None:
        """Every message of the batch has its final outcome (once; later calls do nothing)."""
        if not self._done:
            self._done = True
            self.progress._done(self)


# Of stalled partitions, the ranges fetched and never handed to their agent, each sought back to (the fork's app).
Reread = Callable[[Sequence[Partition]], Awaitable[list[OffsetRange]]]


class StallWatch:
    """Declares a stall (``/healthz`` 503, ``forwarder_stalled`` 1, a warning naming the partitions) and has each
    stalled partition read again what was fetched and never reached its agent: faust can drop the last records it
    fetched (a rebalance clears the stream buffers; a never-committed partition is not sought back), and with no
    record after them the guard sees no hole. The stall then clears by itself at a later look. Both workers."""

    def __init__(self, progress: Progress, health: Health, metrics: OffsetMetrics, reread: Reread | None) -> None:
        self._progress = progress
        self._health = health
        self._metrics = metrics
        self._reread = reread

    async def look(self, lag: Mapping[Partition, int]) -> None:
        """``lag``: what each partition still has to read (without the partitions whose commit is held: the commit
        watch reports those)."""
        stall = None if self._health.fatal or self._health.stopping else self._progress.stall(lag)
        was_stalled = self._health.stalled
        self._health.stalled = stall.describe() if stall else None
        self._metrics.stalled.set(1 if stall else 0)
        if stall is None:
            if was_stalled:
                log.info("no longer stalled: messages are being taken again")
            return
        log.warning(
            "stalled: " + stall.describe(),
            extra={"fields": {"partitions": [f"{t}/{p}" for t, p in stall.partitions]}},
        )
        for unseen in await self._reread(stall.partitions) if self._reread is not None else []:
            self._metrics.offset_gaps.labels(unseen.topic, str(unseen.partition)).inc()
            log.warning(
                "a stalled partition's last records were fetched and never reached its agent; reading them again",
                extra={"fields": unseen.as_dict()},
            )
