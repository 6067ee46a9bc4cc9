"""Each partition in offset order, each offset once, and a commit that never passes a hole: on a fake consumer
that drops records the way faust was seen to, compared with what faust's own arithmetic does with the same acks."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from forwarder.kafka.fastpath import advance
from forwarder.kafka.order import CommitWatch, OffsetGuard, OffsetRange, Pending, Verdict
from tests.helpers import ManualClock

TOPIC = "src"


@dataclass
class Message:
    topic: str
    partition: int
    offset: int


@dataclass
class Event:
    message: Message
    acked: list[int]

    def ack(self) -> None:
        self.acked.append(self.message.offset)


@dataclass
class FakeConsumer:
    """One partition of ``end`` records from ``log_start``; hands them over from its position, dropping the offsets
    ``drop`` says the first time it meets them (faust clearing a buffer the client had already moved past)."""

    end: int
    start: int | None
    log_start_offset: int = 0
    drop: Callable[[int], bool] = lambda offset: False
    position: int = 0
    dropped: set[int] = field(default_factory=set)
    seeks: list[int] = field(default_factory=list)
    lost: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.position = max(self.start or 0, self.log_start_offset)

    def next_batch(self, size: int, acked: list[int]) -> list[Event]:
        batch: list[Event] = []
        while self.position < self.end and len(batch) < size:
            offset = self.position
            self.position += 1
            if offset not in self.dropped and self.drop(offset):
                self.dropped.add(offset)
                continue
            batch.append(Event(Message(TOPIC, 0, offset), acked))
        return batch

    async def reading_start(self, topic: str, partition: int, first: int) -> int:
        if self.start is None:  # never committed: the log start, or lower when the log start moved meanwhile
            return min(first, self.log_start_offset)
        return self.start

    async def seek_back(self, topic: str, partition: int, offset: int) -> None:
        self.seeks.append(offset)
        self.position = offset

    async def log_start(self, topic: str, partition: int) -> int:
        return self.log_start_offset

    def pass_lost(self, topic: str, partition: int, first: int, last: int) -> None:
        self.lost.append((first, last))


def no_gap(hole: OffsetRange) -> None:
    raise AssertionError(f"no skip expected, got {hole}")


async def no_loss(hole: OffsetRange) -> None:
    raise AssertionError(f"no loss expected, got {hole}")


@dataclass
class Run:
    processed: list[int]
    acked: list[int]
    gaps: list[OffsetRange]
    lost: list[OffsetRange]
    commit: int | None


async def run_guarded(consumer: FakeConsumer, batch_size: int = 4, rounds: int = 100) -> Run:
    """The agent's loop: take a batch, admit it through the guard, process and ack what it admits; then commit."""
    clock = ManualClock()
    gaps: list[OffsetRange] = []
    lost: list[OffsetRange] = []

    async def on_lost(hole: OffsetRange) -> None:
        lost.append(hole)

    guard = OffsetGuard(consumer, gaps.append, on_lost, clock)
    processed: list[int] = []
    acked: list[int] = []
    for _ in range(rounds):
        clock.now += 2.0  # past the first re-seek wait: a hole not yet refilled is sought again
        for event in await guard.admit_all(consumer.next_batch(batch_size, acked)):
            processed.append(event.message.offset)
            event.ack()
    base = consumer.start if consumer.start is not None else consumer.log_start_offset
    commit = advance(base, list(acked), set(acked), list(consumer.lost))
    return Run(processed, acked, gaps, lost, commit)


async def test_a_skip_is_read_again_before_anything_after_it_and_each_offset_is_processed_once() -> None:
    # Committed 9: faust hands over 9, then 15 (10-14 fetched and dropped from its buffer).
    consumer = FakeConsumer(end=31, start=9, drop=lambda offset: 10 <= offset <= 14)
    run = await run_guarded(consumer)
    assert run.processed == list(range(9, 31))  # in order, each once
    assert consumer.seeks == [10]
    assert [(g.first, g.last) for g in run.gaps] == [(10, 14)]
    assert run.commit == 31
    assert run.lost == []


async def test_the_record_at_the_committed_offset_dropped_is_read_again() -> None:
    consumer = FakeConsumer(end=31, start=10, drop=lambda offset: offset == 10)
    run = await run_guarded(consumer)
    assert run.processed == list(range(10, 31))
    assert consumer.seeks == [10]
    assert run.commit == 31


async def test_a_group_that_never_committed_starts_where_the_consumer_started() -> None:
    consumer = FakeConsumer(end=31, start=0, drop=lambda offset: offset <= 4)
    run = await run_guarded(consumer)
    assert run.processed == list(range(31))
    assert consumer.seeks == [0]


async def test_records_ahead_of_a_hole_are_neither_processed_nor_acknowledged_until_it_is_filled() -> None:
    consumer = FakeConsumer(end=40, start=0, drop=lambda offset: offset == 3)
    guard = OffsetGuard(consumer, lambda hole: None, no_loss, ManualClock())
    acked: list[int] = []
    first = await guard.admit_all(consumer.next_batch(8, acked))  # 0, 1, 2, 4, 5, 6, 7, 8
    assert [e.message.offset for e in first] == [0, 1, 2]
    assert acked == []  # 4-8 are read again after 3, not acknowledged now
    second = await guard.admit_all(consumer.next_batch(3, acked))
    assert [e.message.offset for e in second] == [3, 4, 5]


async def test_a_copy_of_a_record_admitted_before_is_neither_processed_again_nor_acknowledged() -> None:
    consumer = FakeConsumer(end=20, start=5)
    guard = OffsetGuard(consumer, no_gap, no_loss, ManualClock())
    acked: list[int] = []
    assert [e.message.offset for e in await guard.admit_all(consumer.next_batch(5, acked))] == [5, 6, 7, 8, 9]
    consumer.position = 7  # the same records handed over again (a seek faust made), while 7-9 may be in flight
    again = await guard.admit_all(consumer.next_batch(5, acked))
    assert [e.message.offset for e in again] == [10, 11]
    assert acked == []  # acknowledging a copy would let the commit pass a record still in flight


async def test_a_copy_in_the_same_batch_as_its_first_does_not_commit_it_before_it_is_processed() -> None:
    """Seen in the rebalance storm: the take buffer held an old and a new copy of offset 0 of a partition that came
    back; the copy was acknowledged at once, the commit passed 0, and the first copy, still waiting to be processed,
    was dropped when the partition moved again. Offset 0 was never processed."""
    consumer = FakeConsumer(end=10, start=0)
    guard = OffsetGuard(consumer, no_gap, no_loss, ManualClock())
    acked: list[int] = []
    batch = consumer.next_batch(3, acked)
    consumer.position = 0
    batch += consumer.next_batch(3, acked)  # 0, 1, 2, 0, 1, 2
    admitted = await guard.admit_all(batch)
    assert [e.message.offset for e in admitted] == [0, 1, 2]
    guard.forget([(TOPIC, 0)])  # the partition moves before the batch is processed: nothing of it is acknowledged
    assert acked == []
    assert advance(0, list(acked), set(acked), None) is None


async def test_a_hole_that_does_not_fill_is_sought_again_with_a_growing_wait_and_counted_once() -> None:
    clock = ManualClock()
    consumer = FakeConsumer(end=100, start=0, drop=lambda offset: True)  # everything at 0 and after is dropped
    gaps: list[OffsetRange] = []
    guard = OffsetGuard(consumer, gaps.append, no_loss, clock)
    for _ in range(200):
        assert await guard.admit(TOPIC, 0, 50) is Verdict.EARLY
        clock.now += 0.5
    # 100 s: seeks at 0, 1, 3, 7, 15, 31, 63 s (waits 1, 2, 4 ... s)
    assert consumer.seeks == [0] * 7
    assert len(gaps) == 1


async def test_offsets_below_the_log_start_are_lost_to_retention_and_passed_by_the_commit() -> None:
    # Committed 100; retention deleted everything below 180 before it was read; the client resets to 180.
    consumer = FakeConsumer(end=200, start=100, log_start_offset=180)
    run = await run_guarded(consumer)
    assert run.processed == list(range(180, 200))
    assert [(h.first, h.last) for h in run.lost] == [(100, 179)]
    assert run.gaps == []  # nothing to read again
    assert consumer.seeks == []
    assert run.commit == 200


async def test_a_hole_partly_below_the_log_start_reads_again_what_the_log_still_has() -> None:
    consumer = FakeConsumer(end=60, start=10, log_start_offset=0, drop=lambda offset: 10 <= offset < 30)
    consumer.log_start_offset = 20  # retention moved while 10-29 were dropped
    run = await run_guarded(consumer)
    assert [(h.first, h.last) for h in run.lost] == [(10, 19)]
    assert run.processed == list(range(20, 60))
    assert consumer.seeks == [20]
    assert run.commit == 60


async def test_after_a_revocation_the_next_record_is_compared_with_where_reading_begins_again() -> None:
    consumer = FakeConsumer(end=50, start=20)
    guard = OffsetGuard(consumer, no_gap, no_loss, ManualClock())
    assert await guard.admit(TOPIC, 0, 20) is Verdict.PROCESS
    assert await guard.admit(TOPIC, 0, 21) is Verdict.PROCESS
    assert guard.holds(TOPIC, 0)
    guard.forget([(TOPIC, 0)])
    assert not guard.holds(TOPIC, 0)  # what is still in hand of it is the next owner's
    consumer.start = 20  # the commit did not move: reading begins at 20 again
    assert await guard.admit(TOPIC, 0, 20) is Verdict.PROCESS


# What faust-streaming 0.15.3's own commit arithmetic (Consumer._new_offset) does with a hole, and what the fork's
# does: (committed offset, acked offsets) -> the offset committed.
CASES = [
    # committed, acked, faust commits, the fork commits
    (10, list(range(15, 31)), None, None),  # 10-14 dropped: stuck for ever (the fork: stuck, and reported)
    (10, list(range(11, 31)), 31, None),  # only 10 dropped: faust skips it for good (its issue 606)
    (None, list(range(5, 31)), 31, None),  # never committed, 0-4 dropped: faust skips them for good
    (0, list(range(5, 31)), 31, None),  # faust keeps no committed offset for 0: the same
    (10, list(range(10, 31)), 31, 31),  # no hole: both commit everything
    (10, [10, 11, 12, 14, 15], 13, 13),  # both stop at the hole
]


class FaustState:
    """What faust's ``Consumer._new_offset`` reads of its consumer."""

    def __init__(self, committed: int | None, acked: list[int]) -> None:
        tp = TP(TOPIC, 0)
        self._acked: Any = defaultdict(list, {tp: list(acked)})
        self._acked_index: Any = defaultdict(set, {tp: set(acked)})
        self._gap: Any = defaultdict(lambda: _IntervalTree())
        # faust's perform_seek keeps None for a committed offset of 0
        self._committed_offset: Any = defaultdict(lambda: None, {tp: committed or None})


class _IntervalTree:
    def __bool__(self) -> bool:
        return False


@pytest.mark.parametrize(("committed", "acked", "faust_commits", "fork_commits"), CASES)
def test_the_commit_arithmetic_on_a_hole(
    committed: int | None, acked: list[int], faust_commits: int | None, fork_commits: int | None
) -> None:
    faust_result = FaustConsumer._new_offset(FaustState(committed, acked), TP(TOPIC, 0))  # type: ignore[arg-type]
    assert faust_result == faust_commits
    base = committed if committed is not None else 0  # a group that never committed started at the log start, 0
    assert advance(base, list(acked), set(acked), None) == fork_commits


def test_the_fork_commit_takes_what_it_passes_off_the_acked_list_and_keeps_the_rest() -> None:
    acked = [14, 10, 11, 12, 3]
    index = set(acked)
    assert advance(10, acked, index, None) == 13
    assert acked == [14]  # 3 was below the commit (done already); 14 waits behind 13
    assert index == {14}
    assert advance(13, acked, index, None) is None


def test_the_fork_commit_passes_offsets_lost_to_retention_only() -> None:
    lost = [(20, 29)]
    assert advance(10, list(range(10, 20)) + list(range(30, 35)), set(range(10, 35)), lost) == 35
    assert lost == []
    assert advance(10, list(range(12, 20)), set(range(12, 20)), [(30, 40)]) is None


def test_a_commit_held_behind_a_hole_is_blocked_after_the_timeout_and_released_when_it_moves() -> None:
    clock = ManualClock()
    watch = CommitWatch(120, clock)
    held = {(TOPIC, 0): Pending(10, blocked=True), (TOPIC, 1): Pending(500, blocked=False)}
    assert watch.look(held) == []
    clock.now = 119
    assert watch.look(held) == []
    clock.now = 120
    [blocked] = watch.look(held)
    assert (blocked.topic, blocked.partition, blocked.first_missing) == (TOPIC, 0, 10)
    assert "offset 10" in blocked.describe()
    clock.now = 130
    assert watch.look({(TOPIC, 0): Pending(31, blocked=False)}) == []  # the hole was filled; the commit moved
    clock.now = 140
    assert watch.look({(TOPIC, 0): Pending(40, blocked=True)}) == []  # a new hole: its own clock


def test_a_commit_that_moves_between_looks_is_never_blocked() -> None:
    clock = ManualClock()
    watch = CommitWatch(10, clock)
    for step in range(100):
        clock.now = step * 5.0
        # acknowledged offsets always wait above a moving base with a transient hole
        assert watch.look({(TOPIC, 0): Pending(step * 100, blocked=True)}) == []


@pytest.mark.parametrize(
    ("committed", "dropped", "faust_commits"),
    [(9, range(10, 15), 10), (10, range(10, 11), 31), (0, range(5), 31)],
)
def test_what_faust_did_on_the_same_stream_without_the_guard(
    committed: int, dropped: range, faust_commits: int
) -> None:
    """The agent processes whatever faust hands over: the dropped offsets are never processed, and faust's commit
    either stays behind them for ever (9 is committed, then nothing) or jumps over them."""
    consumer = FakeConsumer(end=31, start=committed, drop=lambda offset: offset in dropped)
    acked: list[int] = []
    processed = [event.message.offset for event in consumer.next_batch(100, acked)]
    assert not set(dropped) & set(processed)
    state = FaustState(committed, processed)
    commits = []
    while (offset := FaustConsumer._new_offset(state, TP(TOPIC, 0))) is not None:  # type: ignore[arg-type]
        commits.append(offset)
        state._committed_offset[TP(TOPIC, 0)] = offset
    assert commits[-1] == faust_commits
    guarded = asyncio.run(run_guarded(FakeConsumer(end=31, start=committed, drop=lambda offset: offset in dropped)))
    assert guarded.processed == list(range(committed, 31))
    assert guarded.commit == 31


async def test_a_never_committed_partition_whose_first_records_were_dropped_is_read_from_the_log_start() -> None:
    """Seen in CI's storm: offset 0 of a new retry partition was dropped before its start was known, the first
    record was taken as the start, and the commit (which starts at the log start) was held behind 0 for good."""
    consumer = FakeConsumer(end=24, start=None, log_start_offset=0, drop=lambda offset: offset == 0)
    run = await run_guarded(consumer)
    assert run.processed == list(range(24))
    assert consumer.seeks == [0]
    assert run.commit == 24
