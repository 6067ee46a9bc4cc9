"""The loss watch: a skip is a loss only below the log start, and each lost offset is reported once."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from forwarder.kafka.lost_offsets import LossWatch, PullCounter
from forwarder.kafka.order import OffsetRange


def confirm_all(watch: LossWatch, log_start: int) -> list[OffsetRange]:
    return [lost for s in watch.take_suspects() if (lost := watch.confirm(s, log_start)) is not None]


def test_a_committed_offset_below_the_log_start_is_a_loss_up_to_the_log_start() -> None:
    watch = LossWatch()
    watch.seeked("src", 0, 5)
    assert confirm_all(watch, 20) == [OffsetRange("src", 0, 5, 19)]


def test_a_committed_offset_at_or_past_the_log_start_loses_nothing() -> None:
    watch = LossWatch()
    watch.seeked("src", 0, 20)
    watch.seeked("src", 1, 30)
    assert confirm_all(watch, 20) == []


def test_a_group_that_never_committed_has_nothing_to_compare() -> None:
    watch = LossWatch()
    watch.seeked("src", 0, None)
    watch.pulled("src", 0, 100, 150)
    assert confirm_all(watch, 100) == []


def test_a_gap_in_pulled_records_is_lost_only_where_it_lies_below_the_log_start() -> None:
    watch = LossWatch()
    watch.seeked("src", 0, 0)
    watch.pulled("src", 0, 0, 9)
    watch.pulled("src", 0, 40, 49)  # skipped 10-39; Kafka starts the log at 30: 30-39 were markers or compacted
    assert confirm_all(watch, 30) == [OffsetRange("src", 0, 10, 29)]


def test_a_gap_above_the_log_start_is_harmless() -> None:
    watch = LossWatch()
    watch.seeked("src", 0, 0)
    watch.pulled("src", 0, 0, 9)
    watch.pulled("src", 0, 11, 20)  # a transaction marker at 10
    assert confirm_all(watch, 0) == []


def test_a_position_reset_with_no_record_after_it_is_found() -> None:
    watch = LossWatch()
    watch.seeked("src", 0, 0)
    watch.pulled("src", 0, 0, 9)
    watch.at_position("src", 0, 10)  # the position follows what was pulled: nothing skipped
    assert confirm_all(watch, 0) == []
    watch.at_position("src", 0, 50)  # reset to the log start, the partition is empty beyond it
    assert confirm_all(watch, 50) == [OffsetRange("src", 0, 10, 49)]


def test_the_same_loss_seen_twice_is_reported_once() -> None:
    watch = LossWatch()
    watch.seeked("src", 0, 5)
    assert confirm_all(watch, 20) == [OffsetRange("src", 0, 5, 19)]
    watch.seeked("src", 0, 5)  # assigned again, the group's commit has not moved past the gap
    watch.pulled("src", 0, 20, 30)
    assert confirm_all(watch, 20) == []


def test_records_read_between_two_skips_are_not_counted_as_lost() -> None:
    watch = LossWatch()
    watch.seeked("src", 0, 0)
    watch.pulled("src", 0, 10, 19)  # skipped 0-9
    watch.pulled("src", 0, 30, 39)  # skipped 20-29
    assert confirm_all(watch, 35) == [OffsetRange("src", 0, 0, 9), OffsetRange("src", 0, 20, 29)]


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 20)), min_size=1, max_size=30),
    st.integers(0, 300),
)
def test_lost_offsets_are_never_offsets_that_were_pulled_and_each_is_reported_once(
    steps: list[tuple[int, int]], log_start: int
) -> None:
    """Whatever the skips and runs, a reported offset was never handed to the worker, and none is reported twice."""
    watch = LossWatch()
    watch.seeked("src", 0, 0)
    offset = 0
    pulled: set[int] = set()
    reported: list[int] = []
    for skip, run in steps:
        offset += skip
        watch.pulled("src", 0, offset, offset + run - 1)
        pulled.update(range(offset, offset + run))
        offset += run
        for lost in confirm_all(watch, log_start):
            reported.extend(range(lost.first, lost.last + 1))
    assert not set(reported) & pulled
    assert len(reported) == len(set(reported))
    assert all(o < log_start for o in reported)
    assert set(reported) == set(range(min(offset, log_start))) - pulled


async def test_settled_waits_for_the_pulls_under_way_and_gives_up_after_the_timeout() -> None:
    pulls = PullCounter()
    pulls.begin()
    target = pulls.started
    assert not await pulls.settled(target, 0.05)  # the pull has not ended
    asyncio.get_running_loop().call_later(0.01, pulls.end)
    assert await pulls.settled(target, 5)
