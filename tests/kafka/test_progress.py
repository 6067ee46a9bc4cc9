"""Stalls: lag with nothing taken and nothing in progress, on a fake clock."""

from __future__ import annotations

from forwarder.kafka.progress import Progress, Stall
from tests.helpers import ManualClock


def test_lag_with_nothing_taken_for_the_timeout_is_a_stall_naming_the_partitions() -> None:
    clock = ManualClock(1000.0)
    progress = Progress(120, clock)
    clock.now += 119
    assert progress.stall({("src", 0): 5, ("src", 1): 0}) is None
    clock.now += 1
    stall = progress.stall({("src", 0): 5, ("src", 1): 0})
    assert stall == Stall((("src", 0),), 120.0)
    assert "src/0" in stall.describe()
    assert "src/1" not in stall.describe()


def test_no_lag_is_never_a_stall_however_long_the_agent_is_idle() -> None:
    clock = ManualClock(1000.0)
    progress = Progress(120, clock)
    clock.now += 10_000
    assert progress.stall({("src", 0): 0}) is None


def test_a_delivery_in_progress_is_not_a_stall_however_long_it_takes() -> None:
    clock = ManualClock(1000.0)
    progress = Progress(120, clock)
    progress.taken("src", [(0, 1.0)])
    with progress.working("src", [0]):
        clock.now += 600  # an Amplitude outage, retried all along
        assert progress.stall({("src", 0): 50}) is None
    # The stall clock restarts when the work ends: a long delivery is progress.
    clock.now += 119
    assert progress.stall({("src", 0): 50}) is None
    clock.now += 1
    assert progress.stall({("src", 0): 50}) is not None


def test_taking_messages_resets_the_stall_clock_per_partition() -> None:
    clock = ManualClock(1000.0)
    progress = Progress(120, clock)
    clock.now += 100
    progress.taken("retry", [(0, None)])
    progress.taken("src", [(1, None)])
    clock.now += 30
    # The retry agent took something; the source agent only took partition 1: partition 0 stalls though its
    # neighbour is read.
    stall = progress.stall({("src", 0): 1, ("src", 1): 1, ("retry", 0): 1})
    assert stall is not None
    assert stall.partitions == (("src", 0),)


def test_a_batch_of_other_partitions_does_not_hide_a_starved_one() -> None:
    clock = ManualClock(1000.0)
    progress = Progress(120, clock)
    first_stall_at = None
    for _ in range(10):  # the agent works all the time, on partition 1 only
        progress.taken("src", [(1, None)])
        with progress.working("src", [1]):
            clock.now += 15
            stall = progress.stall({("src", 0): 7, ("src", 1): 7})
            if stall is not None and first_stall_at is None:
                first_stall_at = clock.now - 1000
                assert stall.partitions == (("src", 0),)
    assert first_stall_at == 120


def test_a_partition_assigned_late_starts_its_clock_then() -> None:
    clock = ManualClock(1000.0)
    progress = Progress(120, clock)
    clock.now += 500
    progress.assigned([("src", 3)])
    clock.now += 60
    assert progress.stall({("src", 3): 9}) is None
    clock.now += 60
    assert progress.stall({("src", 3): 9}) is not None


def test_the_oldest_record_in_hand_is_the_first_taken_per_partition_until_finished() -> None:
    progress = Progress(120, ManualClock(1000.0))
    assert progress.oldest_age_s("src", 0, 5000.0) == 0.0
    progress.taken("src", [(0, 1000.0), (0, 1500.0), (1, 4000.0)])
    assert progress.oldest_age_s("src", 0, 5000.0) == 4000.0
    assert progress.oldest_age_s("src", 1, 5000.0) == 1000.0
    progress.finished("src")
    assert progress.oldest_age_s("src", 0, 5000.0) == 0.0


def test_one_record_at_a_time_a_partition_waiting_behind_a_long_sync_is_not_stalled() -> None:
    """The cohort worker syncs one record at a time: a partition whose records wait behind another's long sync is
    not stalled; once the agent idles for the timeout with lag, it is."""
    clock = [0.0]
    progress = Progress(10, clock=lambda: clock[0], one_at_a_time=True)
    progress.assigned([("cohorts", 0), ("cohorts", 1)])
    with progress.working("cohorts", [0]):
        clock[0] = 60.0
        assert progress.stall({("cohorts", 0): 5, ("cohorts", 1): 5}) is None
    clock[0] = 65.0
    assert progress.stall({("cohorts", 1): 5}) is None  # the agent worked 5 s ago
    clock[0] = 71.0
    stall = progress.stall({("cohorts", 1): 5})
    assert stall is not None
    assert stall.partitions == (("cohorts", 1),)


def test_a_batch_in_hand_is_worked_on_until_done_and_its_oldest_record_leaves_with_it_alone() -> None:
    """The worker's runs carry over from one batch into the next: batch 1 may be final after batch 2 was taken."""
    clock = ManualClock(1000.0)
    progress = Progress(120, clock)
    first = progress.hand("src", [(0, 1000.0), (0, 1500.0)])
    second = progress.hand("src", [(0, 2000.0), (1, 3000.0)])
    assert progress.oldest_age_s("src", 0, 5000.0) == 4000.0
    clock.now += 600  # both still being delivered: no stall however long
    assert progress.stall({("src", 0): 9, ("src", 1): 9}) is None
    first.done()
    assert progress.oldest_age_s("src", 0, 5000.0) == 3000.0  # batch 2's first record of the partition
    assert progress.oldest_age_s("src", 1, 5000.0) == 2000.0
    first.done()  # once only: batch 2 stays in hand
    assert progress.stall({("src", 0): 9}) is None
    second.done()
    assert progress.oldest_age_s("src", 0, 5000.0) == 0.0
    clock.now += 119
    assert progress.stall({("src", 0): 9}) is None  # the stall clock runs from the end of the work
    clock.now += 1
    assert progress.stall({("src", 0): 9}) is not None
