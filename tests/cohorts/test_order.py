"""Records reach the cohort agent in offset order, each once: a skip is read again, a copy is not done twice."""

from __future__ import annotations

from forwarder.cohorts.order import OffsetOrder


class Seeks:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, partition: int, offset: int) -> None:
        self.calls.append((partition, offset))


async def test_records_skipped_by_the_consumer_are_read_again_before_later_ones() -> None:
    now = [0.0]
    seeks = Seeks()
    order = OffsetOrder(seeks, clock=lambda: now[0])
    assert await order.admit(0, 9)
    order.done(0, 9)
    # offsets 10-14 were dropped from faust's buffer; 15 and 16 arrive
    assert not await order.admit(0, 15)
    assert not await order.admit(0, 16)  # no second seek within a second
    assert seeks.calls == [(0, 10)]
    assert await order.admit(0, 10)  # read again from 10
    order.done(0, 10)
    assert not await order.admit(0, 9)  # a copy of a record done already
    assert await order.admit(1, 500)  # partitions are independent


async def test_offsets_the_log_no_longer_has_are_counted_lost_after_three_seeks() -> None:
    now = [0.0]
    seeks = Seeks()
    order = OffsetOrder(seeks, clock=lambda: now[0])
    order.done(0, 99)
    for _ in range(3):
        assert not await order.admit(0, 180)
        now[0] += 1.5
    assert await order.admit(0, 180)
    assert order.lost == 80
    assert len(seeks.calls) == 3


async def test_after_a_rebalance_the_first_record_is_the_start() -> None:
    order = OffsetOrder(Seeks())
    order.done(3, 41)
    order.forget({3})
    assert await order.admit(3, 20)  # the committed offset, behind what this worker did before


async def test_the_first_record_after_a_start_is_checked_against_the_committed_offset() -> None:
    seeks = Seeks()

    async def committed(partitions: set[int]) -> dict[int, int]:
        return {p: 10 for p in partitions if p == 0}

    order = OffsetOrder(seeks, committed)
    assert not await order.admit(0, 11)  # faust dropped offset 10, where it began to read
    assert seeks.calls == [(0, 10)]
    assert await order.admit(0, 10)
    assert await order.admit(1, 7)  # never committed: the first record is the start
