"""Each partition's records processed in offset order, each once, whatever faust's buffers do; and a commit that
cannot move, reported.

faust can drop records it fetched around a rebalance (shared/spec/faust-delivery.md, "Records faust can skip"):
aiokafka has moved its position past them, so nothing reads them again, and faust's commit arithmetic then either
never moves again or jumps over them. Seen in this project on a real broker: offset 9, then 15; and the record at
the committed offset itself dropped. So every agent asks the ``OffsetGuard`` before it processes a record:

- the first record of a partition (at start, after a rebalance) is compared with where the group's reading of
  it began (the committed offset, or the position a never-committed group started from), asked of the worker's
  own consumer;
- a record at the expected offset is processed; one behind it is a copy of a record admitted before (never
  processed twice, and not acknowledged: the first copy may still be in flight, and its own acknowledgement is
  the one that counts); one ahead of it means records were skipped: nothing after the hole is processed, the
  partition is sought back to the first missing offset, the skip is counted and logged once with its range;
- a hole is given up only where it lies below the partition's log start (retention deleted it): that part is
  reported lost (``on_lost``) and the commit may pass it; otherwise the guard keeps seeking, with a back-off,
  and the ``CommitWatch`` reports a commit that cannot move.

The consumer side (where reading began, seeking, the log start, letting the commit pass lost offsets) is the
fork's consumer (``forwarder.kafka.fastpath``); here it is a protocol, so the rules run without faust.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

log = logging.getLogger("forwarder.order")

Partition = tuple[str, int]

# The first seek after a skip is at once; while records ahead of the hole keep arriving it is repeated, each time
# after twice the wait, up to a minute (a hole that does not fill is the CommitWatch's to report).
FIRST_RESEEK_S = 1.0
MAX_RESEEK_S = 60.0


class Verdict(enum.Enum):
    PROCESS = "process"
    # Behind the expected offset: a copy of a record admitted before. Neither processed again nor acknowledged: the
    # first copy's acknowledgement is the one that counts, once it is final (acknowledging the copy committed a
    # record still in flight, whose partition then moved: seen in the rebalance storm).
    DONE = "done"
    EARLY = "early"  # ahead of a hole: neither processed nor acknowledged; it is read again after the hole


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Offsets ``first`` to ``last`` of a partition: a hole, a range lost to retention, a range never processed."""

    topic: str
    partition: int
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def describe(self) -> str:
        return f"{self.topic}/{self.partition} {self.first}-{self.last}"

    def as_dict(self) -> dict[str, object]:
        return {"topic": self.topic, "partition": self.partition, "first": self.first, "last": self.last}

    def loss_fields(self, retention_ms: int | None) -> dict[str, object]:
        """The range as a loss's log line and dead-letter value both state it."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "first_offset": self.first,
            "last_offset": self.last,
            "count": self.count,
            "retention_ms": retention_ms,
        }


class Taken(Protocol):
    """A record handed to an agent (faust's ``Event``): its message, and how to acknowledge it."""

    @property
    def message(self) -> Any: ...

    def ack(self) -> Any: ...


TakenT = TypeVar("TakenT", bound=Taken)


class ReadingSide(Protocol):
    """What the guard asks of the worker's consumer."""

    async def reading_start(self, topic: str, partition: int, first: int) -> int:
        """Where the group's reading of the partition began this assignment (``first``: the offset of the first
        record the agent was handed): the committed offset, or where a group that never committed began, which
        is never after ``first`` (the commit starts from the same offset)."""

    async def seek_back(self, topic: str, partition: int, offset: int) -> None: ...

    async def log_start(self, topic: str, partition: int) -> int: ...

    def pass_lost(self, topic: str, partition: int, first: int, last: int) -> None:
        """Offsets Kafka deleted: the commit may move past them."""


@dataclass(slots=True)
class _Seeking:
    target: int
    next_at: float
    wait_s: float


class OffsetGuard:
    def __init__(
        self,
        consumer: ReadingSide,
        on_gap: Callable[[OffsetRange], None],
        on_lost: Callable[[OffsetRange], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``on_gap(hole)``: a skip was found (count it); ``on_lost(hole)``: offsets below the log start, gone
        for good (count, log and dead-letter them)."""
        self._consumer = consumer
        self._on_gap = on_gap
        self._on_lost = on_lost
        self._clock = clock
        self._expected: dict[Partition, int] = {}
        self._seeking: dict[Partition, _Seeking] = {}

    async def admit(self, topic: str, partition: int, offset: int) -> Verdict:
        key = (topic, partition)
        expected = self._expected.get(key)
        if expected is None:
            expected = await self._consumer.reading_start(topic, partition, offset)
        if offset < expected:
            self._expected[key] = expected
            return Verdict.DONE
        if offset > expected:
            expected = await self._behind_a_hole(key, expected, offset)
            self._expected[key] = expected
            if offset != expected:
                return Verdict.EARLY
        self._expected[key] = offset + 1
        self._seeking.pop(key, None)
        return Verdict.PROCESS

    async def admit_all(self, batch: Sequence[TakenT]) -> list[TakenT]:
        """The records of ``batch`` to process, in order; copies of records admitted before and those ahead of a
        hole are left out, unacknowledged."""
        admitted: list[TakenT] = []
        expected = self._expected
        for taken in batch:
            message = taken.message
            key = (message.topic, message.partition)
            offset = message.offset
            if expected.get(key) == offset and key not in self._seeking:  # the common case, without a coroutine
                expected[key] = offset + 1
                admitted.append(taken)
                continue
            if await self.admit(message.topic, message.partition, offset) is Verdict.PROCESS:
                admitted.append(taken)
        return admitted

    def expected(self, topic: str, partition: int) -> int | None:
        """The next offset to process, or None when nothing was admitted since the partition was assigned."""
        return self._expected.get((topic, partition))

    def holds(self, topic: str, partition: int) -> bool:
        """False once the partition was revoked: what is still in hand of it is the next owner's to process."""
        return (topic, partition) in self._expected

    def forget(self, partitions: Iterable[Partition]) -> None:
        """After a revocation: the next record of these partitions is compared with where reading begins again."""
        for key in partitions:
            self._expected.pop(key, None)
            self._seeking.pop(key, None)

    async def _behind_a_hole(self, key: Partition, expected: int, offset: int) -> int:
        """Offsets ``expected`` to ``offset - 1`` were skipped. Returns the offset now expected: ``offset`` when
        the whole hole lies below the log start, else the first missing offset (sought back to)."""
        seeking = self._seeking.get(key)
        now = self._clock()
        if seeking is not None and seeking.target == expected and now < seeking.next_at:
            return expected  # sought already; the records ahead of the hole were in hand before the seek
        topic, partition = key
        try:
            log_start = await self._consumer.log_start(topic, partition)
        except Exception as exc:  # unknown now: nothing is given up; the next seek asks again
            log.warning("could not read the log start", extra={"fields": {"topic": topic, "error": repr(exc)}})
            log_start = expected
        if log_start > expected:
            lost = OffsetRange(topic, partition, expected, min(log_start, offset) - 1)
            await self._on_lost(lost)
            self._consumer.pass_lost(topic, partition, lost.first, lost.last)
            expected = lost.last + 1
            if expected == offset:
                return expected
        if seeking is None or seeking.target != expected:
            hole = OffsetRange(topic, partition, expected, offset - 1)
            self._on_gap(hole)
            log.warning(
                "records were skipped by the consumer; reading them again before anything after them",
                extra={"fields": {"topic": topic, "partition": partition, "first": hole.first, "last": hole.last}},
            )
            seeking = _Seeking(expected, now, FIRST_RESEEK_S)
        await self._consumer.seek_back(topic, partition, expected)
        self._seeking[key] = _Seeking(expected, now + seeking.wait_s, min(seeking.wait_s * 2, MAX_RESEEK_S))
        return expected


@dataclass(frozen=True, slots=True)
class Pending:
    """A partition's commit state: the next offset to commit, and whether acknowledged offsets wait above it
    while that offset itself is not acknowledged (a hole the commit cannot pass)."""

    next_offset: int
    blocked: bool


@dataclass(frozen=True, slots=True)
class Blocked:
    topic: str
    partition: int
    first_missing: int
    since_s: float

    def describe(self) -> str:
        return (
            f"the commit of {self.topic}/{self.partition} cannot move: offset {self.first_missing} was never "
            f"acknowledged while later ones were, for {self.since_s:.0f} s"
        )


@dataclass(frozen=True, slots=True)
class CommitCheck:
    gauge: dict[Partition, int]
    reason: str | None
    held: set[Partition]


class CommitWatch:
    """Per partition: a commit held behind an unacknowledged offset for ``timeout_s`` is blocked.

    Everything looks healthy while it lasts (the worker works, the stall clock sees progress) and faust's list of
    acknowledged offsets grows by one entry per record until the pod runs out of memory; the liveness probe
    restarting the pod (reading again from the commit) is the repair.
    """

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._holes: dict[Partition, tuple[int, float]] = {}
        self._warned: set[Partition] = set()
        self._shown: set[Partition] = set()

    def look(self, pending: Mapping[Partition, Pending]) -> list[Blocked]:
        """The partitions blocked now (``pending``: every assigned partition's state); logs each once."""
        now = self._clock()
        blocked: list[Blocked] = []
        for key in list(self._holes):
            if key not in pending or not pending[key].blocked:
                self._clear(key)
        for key, state in sorted(pending.items()):
            if not state.blocked:
                continue
            first, since = self._holes.get(key, (state.next_offset, now))
            if first != state.next_offset:
                first, since = state.next_offset, now
            self._holes[key] = (first, since)
            if now - since >= self.timeout_s:
                found = Blocked(key[0], key[1], first, now - since)
                blocked.append(found)
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning(
                        found.describe(),
                        extra={"fields": {"topic": key[0], "partition": key[1], "first_missing": first}},
                    )
        return blocked

    def check(self, pending: Mapping[Partition, Pending]) -> CommitCheck:
        """``look``, with what a worker shows of it: a 0/1 gauge value for every partition it has shown (one that
        moved away is no longer blocked here), the reason for ``/healthz``, and the partitions held behind a hole
        now, timed out or not (their lag is not unread records: no stall)."""
        blocked = {(b.topic, b.partition): b for b in self.look(pending)}
        shown = set(pending) | self._shown
        self._shown = set(pending)
        return CommitCheck(
            gauge={key: int(key in blocked) for key in shown},
            reason="; ".join(b.describe() for b in blocked.values()) or None,
            held={key for key, state in pending.items() if state.blocked},
        )

    def _clear(self, key: Partition) -> None:
        del self._holes[key]
        if key in self._warned:
            self._warned.discard(key)
            log.info("the commit moves again", extra={"fields": {"topic": key[0], "partition": key[1]}})
