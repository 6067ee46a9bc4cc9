"""Stalls: lag with nothing taken and nothing in progress, on a fake clock."""

from __future__ import annotations

from forwarder.worker.progress import Progress, Stall


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lag_with_nothing_taken_for_the_timeout_is_a_stall_naming_the_partitions() -> None:
    clock = Clock()
    progress = Progress(120, clock)
    clock.now += 119
    assert progress.stall({("src", 0): 5, ("src", 1): 0}) is None
    clock.now += 1
    stall = progress.stall({("src", 0): 5, ("src", 1): 0})
    assert stall == Stall((("src", 0),), 120.0)
    assert "src/0" in stall.describe()
    assert "src/1" not in stall.describe()


def test_no_lag_is_never_a_stall_however_long_the_agent_is_idle() -> None:
    clock = Clock()
    progress = Progress(120, clock)
    clock.now += 10_000
    assert progress.stall({("src", 0): 0}) is None


def test_a_delivery_in_progress_is_not_a_stall_however_long_it_takes() -> None:
    clock = Clock()
    progress = Progress(120, clock)
    progress.taken("src", [(0, 1.0)])
    with progress.working("src"):
        clock.now += 600  # an Amplitude outage, retried all along
        assert progress.stall({("src", 0): 50}) is None
    # The stall clock restarts when the work ends: a long delivery is progress.
    clock.now += 119
    assert progress.stall({("src", 0): 50}) is None
    clock.now += 1
    assert progress.stall({("src", 0): 50}) is not None


def test_taking_messages_resets_the_stall_clock_per_topic() -> None:
    clock = Clock()
    progress = Progress(120, clock)
    clock.now += 100
    progress.taken("retry", [(0, None)])
    clock.now += 30
    # The retry agent took something; the source agent did not: only the source partitions stall.
    stall = progress.stall({("src", 0): 1, ("retry", 0): 1})
    assert stall is not None
    assert stall.partitions == (("src", 0),)


def test_the_oldest_record_in_hand_is_the_first_taken_per_partition_until_finished() -> None:
    progress = Progress(120, Clock())
    assert progress.oldest_age_s("src", 0, 5000.0) == 0.0
    progress.taken("src", [(0, 1000.0), (0, 1500.0), (1, 4000.0)])
    assert progress.oldest_age_s("src", 0, 5000.0) == 4000.0
    assert progress.oldest_age_s("src", 1, 5000.0) == 1000.0
    progress.finished("src")
    assert progress.oldest_age_s("src", 0, 5000.0) == 0.0
