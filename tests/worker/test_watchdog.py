"""The watchdog over a fake consumer view: true lag, losses stored before they are counted, stalls to /healthz."""

from __future__ import annotations

from typing import Any, NamedTuple

from forwarder.health import Health
from forwarder.kafka.dead_letters import DeadLetterRecord, header_map
from forwarder.kafka.lost_offsets import LossWatch, PullCounter
from forwarder.kafka.order import OffsetRange, Pending
from forwarder.kafka.progress import Progress
from forwarder.worker.metrics import Metrics
from forwarder.worker.watchdog import Watchdog
from tests.helpers import ManualClock


class TP(NamedTuple):
    topic: str
    partition: int


class Consumer:
    def __init__(self, highwater: dict[TP, int], log_start: dict[TP, int], position: dict[TP, int]) -> None:
        self._highwater, self._log_start, self._position = highwater, log_start, position

    def assignment(self) -> set[Any]:
        return set(self._highwater)

    def highwater(self, tp: Any) -> int | None:
        return self._highwater[tp]

    async def earliest_offsets(self, *partitions: Any) -> Any:
        return {tp: self._log_start[tp] for tp in partitions}

    async def position(self, tp: Any) -> int | None:
        return self._position[tp]


class Kafka:
    def __init__(self) -> None:
        self.written: list[DeadLetterRecord] = []
        self.recorded: list[OffsetRange] = []

    async def write(self, records: list[DeadLetterRecord]) -> None:
        self.written.extend(records)

    async def record_lost(self, lost: OffsetRange) -> None:
        self.recorded.append(lost)

    async def retention_ms(self, topic: str) -> int | None:
        return 3_600_000


def watchdog(
    consumer: Consumer,
    committed: dict[TP, int],
    watch: LossWatch | None = None,
    clock: ManualClock | None = None,
    commits: dict[tuple[str, int], Pending] | None = None,
    reread: Any = None,
):
    metrics, health, kafka = Metrics(), Health(), Kafka()
    progress = Progress(120, clock or ManualClock())
    dog = Watchdog(
        consumer,
        committed,
        watch or LossWatch(),
        progress,
        metrics,
        health,
        kafka,
        PullCounter(),
        commits=None if commits is None else lambda: commits,
        reread=reread,
    )
    return dog, metrics, health, kafka


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_lag_counts_only_what_can_still_be_read() -> None:
    a, b = TP("src", 0), TP("src", 1)
    consumer = Consumer({a: 100, b: 100}, {a: 100, b: 10}, {a: 100, b: 40})
    dog, metrics, _, _ = watchdog(consumer, {a: 40, b: 40})
    await dog.tick()
    # a: everything below 100 was deleted, nothing is left to read; b: 60 records after the committed 40.
    assert sample(metrics, "forwarder_consumer_lag", topic="src", partition="0") == 0
    assert sample(metrics, "forwarder_consumer_lag", topic="src", partition="1") == 60


def losing_40_to_99() -> tuple[Watchdog, Metrics, Kafka]:
    """A partition assigned at committed offset 40 whose log now starts at 100."""
    a = TP("src", 0)
    watch = LossWatch()
    watch.seeked("src", 0, 40)
    dog, metrics, _, kafka = watchdog(Consumer({a: 100}, {a: 100}, {a: 100}), {a: 40}, watch)
    return dog, metrics, kafka


async def test_a_loss_is_stored_in_the_dead_letter_topic_and_counted_once() -> None:
    dog, metrics, kafka = losing_40_to_99()
    await dog.tick()
    await dog.tick()
    assert sample(metrics, "forwarder_offsets_lost_total", topic="src", partition="0") == 60
    [letter] = kafka.written
    headers = header_map(letter.headers())
    assert (headers["reason"], headers["first_offset"], headers["last_offset"]) == ("lost_to_retention", "40", "99")
    assert letter.source.key == b"src/0/40-99"


async def test_a_stall_makes_healthz_fail_and_clears_when_messages_are_taken_again() -> None:
    a = TP("src", 0)
    clock = ManualClock()
    dog, metrics, health, _ = watchdog(Consumer({a: 100}, {a: 0}, {a: 50}), {a: 40}, clock=clock)
    await dog.tick()
    assert health.liveness()[1]
    clock.now += 121
    await dog.tick()
    body, alive = health.liveness()
    assert not alive
    assert "src/0" in body["reason"]
    assert sample(metrics, "forwarder_stalled") == 1
    dog._progress.taken("src", [(0, None)])
    await dog.tick()
    assert health.liveness()[1]
    assert sample(metrics, "forwarder_stalled") == 0


async def test_a_stalled_partition_is_asked_to_read_again_what_never_reached_its_agent(caplog) -> None:
    """faust can drop the last records it fetched and nothing after them shows the guard a hole: only the stall
    does. The watchdog then has the fork seek back over the unseen range, and says so."""
    a, b = TP("retry", 2), TP("retry", 0)
    clock = ManualClock()
    asked: list[list[tuple[str, int]]] = []

    async def reread(partitions: list[tuple[str, int]]) -> list[OffsetRange]:
        asked.append(list(partitions))
        return [OffsetRange("retry", 2, 0, 23)]

    consumer = Consumer({a: 24, b: 0}, {a: 0, b: 0}, {a: 24, b: 0})
    dog, metrics, _, _ = watchdog(consumer, {a: 0, b: 0}, clock=clock, reread=reread)
    await dog.tick()
    assert asked == []  # not stalled yet: nothing is asked
    clock.now += 121
    await dog.tick()
    assert asked == [[("retry", 2)]]  # only the stalled partition, not the one without lag
    assert sample(metrics, "forwarder_offset_gaps_total", topic="retry", partition="2") == 1
    [line] = [r for r in caplog.records if "never reached its agent" in r.getMessage()]
    assert line.fields == {"topic": "retry", "partition": 2, "first": 0, "last": 23}


async def test_a_commit_held_behind_a_hole_fails_healthz_as_blocked_not_stalled_and_clears_when_it_moves() -> None:
    a = TP("src", 0)
    clock = ManualClock()
    commits = {("src", 0): Pending(40, blocked=True)}  # 41-99 acknowledged, 40 never
    committed = {a: 40}
    dog, metrics, health, _ = watchdog(Consumer({a: 100}, {a: 0}, {a: 100}), committed, clock=clock, commits=commits)
    await dog.tick()
    assert health.liveness()[1]
    clock.now += 121  # nothing more to take; the lag (100 - 40) is the hole's, not unread records'
    await dog.tick()
    body, alive = health.liveness()
    assert not alive
    assert body == {
        "status": "commit blocked",
        "reason": "the commit of src/0 cannot move: offset 40 was never acknowledged while later ones were, for 121 s",
    }
    assert sample(metrics, "forwarder_commit_blocked", topic="src", partition="0") == 1
    assert sample(metrics, "forwarder_stalled") == 0
    commits[("src", 0)] = Pending(100, blocked=False)  # read again and acknowledged: the commit moved
    committed[a] = 100
    await dog.tick()
    assert health.liveness() == ({"status": "alive"}, True)
    assert sample(metrics, "forwarder_commit_blocked", topic="src", partition="0") == 0


async def test_a_worker_parked_on_a_fatal_error_or_shutting_down_is_not_called_stalled() -> None:
    a = TP("src", 0)
    clock = ManualClock()
    dog, _, health, _ = watchdog(Consumer({a: 100}, {a: 0}, {a: 50}), {a: 40}, clock=clock)
    clock.now += 500
    health.fatal = "invalid API key"
    await dog.tick()
    assert health.liveness()[1]
    health.fatal, health.stopping = None, True
    await dog.tick()
    assert health.liveness()[1]


async def test_a_partition_revoked_mid_look_does_not_stop_the_worker() -> None:
    """Seen in the chaos test: aiokafka asserts when asked about a partition a rebalance just took away."""
    a, b = TP("src", 0), TP("src", 1)

    class Revoking(Consumer):
        def highwater(self, tp: Any) -> int | None:
            if tp == b:
                raise AssertionError("Partition is not assigned")
            return super().highwater(tp)

    dog, metrics, _, _ = watchdog(Revoking({a: 10, b: 10}, {a: 0, b: 0}, {a: 10, b: 10}), {a: 10, b: 0})
    await dog.tick()
    assert sample(metrics, "forwarder_consumer_lag", topic="src", partition="0") == 0


async def test_a_loss_whose_dead_letter_cannot_be_stored_is_reported_on_a_later_look() -> None:
    dog, metrics, kafka = losing_40_to_99()

    async def refuse(records: list[DeadLetterRecord]) -> None:
        raise ConnectionError("the broker is restarting")

    kafka.write = refuse  # type: ignore[method-assign]  # the broker refuses this once
    await dog.tick()  # logged, not raised
    assert sample(metrics, "forwarder_offsets_lost_total", topic="src", partition="0") is None
    del kafka.write  # the broker is back
    await dog.tick()
    assert sample(metrics, "forwarder_offsets_lost_total", topic="src", partition="0") == 60
    assert len(kafka.written) == 1


async def test_the_oldest_record_in_hand_past_half_the_retention_is_warned_about(caplog) -> None:
    """Retention here is one hour: a record taken 40 minutes after it was written is past half of it."""
    import logging
    import time

    a = TP("src", 0)
    dog, metrics, _, _ = watchdog(Consumer({a: 10}, {a: 0}, {a: 10}), {a: 0})
    dog._progress.taken("src", [(0, time.time() - 2400)])
    with caplog.at_level(logging.WARNING, logger="forwarder.watchdog"):
        await dog.tick()
    age = sample(metrics, "forwarder_oldest_unprocessed_age_seconds", topic="src", partition="0")
    assert age is not None
    assert age >= 2400
    [warning] = [r for r in caplog.records if "past half the topic's retention" in r.getMessage()]
    assert warning.fields["retention_ms"] == 3_600_000
    dog._progress.finished("src")
    await dog.tick()
    assert sample(metrics, "forwarder_oldest_unprocessed_age_seconds", topic="src", partition="0") == 0
