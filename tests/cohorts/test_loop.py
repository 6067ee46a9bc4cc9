"""The cohort agent's loop without a broker: what is acknowledged when, parking on a refused key, and what a
revocation drops (``forwarder.cohorts.loop``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson

from forwarder.cohorts.loop import CohortLoop
from forwarder.cohorts.moengage import MoEngageFatal
from forwarder.cohorts.records import Record, WebhookChange
from forwarder.health import Health
from forwarder.kafka.dead_letters import SourceRef
from forwarder.kafka.order import Verdict
from forwarder.kafka.progress import Progress

TOPIC = "amplitude-cohort-changes"


def webhook(cohort: str = "c1", user: str = "customer-1") -> bytes:
    return orjson.dumps({"cohort_id": cohort, "cohort_name": cohort, "in_cohort": True, "users": [{"user_id": user}]})


def event(partition: int, offset: int, value: bytes) -> Any:
    message = SimpleNamespace(
        topic=TOPIC, partition=partition, offset=offset, key=b"k", value=value, headers=[], timestamp=1_700_000_000.25
    )
    return SimpleNamespace(message=message, name=f"{partition}@{offset}")


class Guard:
    def __init__(self, verdicts: dict[tuple[int, int], Verdict] | None = None) -> None:
        self.verdicts = verdicts or {}

    async def admit(self, topic: str, partition: int, offset: int) -> Verdict:
        return self.verdicts.get((partition, offset), Verdict.PROCESS)


@dataclass
class Syncer:
    """Holds each record until ``release`` names it, as the real syncer holds a record until MoEngage answered."""

    journal: list[str]
    fatal_at: int | None = None
    unreadable_refs: list[SourceRef] = field(default_factory=list)
    forgotten: set[int] = field(default_factory=set)
    waiting: list[SourceRef] = field(default_factory=list)
    release_each: bool = True
    items: list[Record] = field(default_factory=list)

    async def handle(self, item: Record, ref: SourceRef) -> list[SourceRef]:
        self.journal.append(f"sync {ref.partition}@{ref.offset}")
        self.items.append(item)
        if ref.offset == self.fatal_at:
            raise MoEngageFatal("MoEngage answered 401: check MOENGAGE_DATA_API_KEY")
        self.waiting.append(ref)
        if not self.release_each:
            return []
        done, self.waiting = self.waiting, []
        return done

    async def unreadable(self, value: bytes, ref: SourceRef, reason: str) -> list[SourceRef]:
        self.journal.append(f"dead letter {ref.partition}@{ref.offset}")
        self.unreadable_refs.append(ref)
        return [ref]

    def forget_partitions(self, partitions: set[int]) -> None:
        self.forgotten |= partitions


@dataclass
class Store:
    journal: list[str]
    partition: int = -1

    async def flush(self) -> None:
        self.journal.append("flush state")


@dataclass
class Publisher:
    journal: list[str]

    async def flush(self, force: bool = False) -> None:
        self.journal.append("publish status")


class Rig:
    def __init__(self, syncer: Syncer | None = None, guard: Guard | None = None) -> None:
        self.journal: list[str] = []
        self.syncer = syncer or Syncer(self.journal)
        self.syncer.journal = self.journal
        self.health = Health(upstream="moengage")
        self.parked = asyncio.Event()

        async def park() -> None:
            self.journal.append("parked")
            self.parked.set()

        def acknowledge(events: list[Any]) -> None:
            self.journal.extend(f"ack {e.name}" for e in events)

        self.loop = CohortLoop(
            guard or Guard(), self.syncer, Store(self.journal), Publisher(self.journal), acknowledge, self.health, park
        )


async def test_a_record_is_acknowledged_only_after_its_state_is_durable() -> None:
    rig = Rig()
    await rig.loop.take(event(0, 5, webhook()))
    assert rig.journal == ["sync 0@5", "flush state", "ack 0@5", "publish status"]
    assert rig.loop.held == {}


async def test_a_record_the_syncer_still_holds_is_acknowledged_with_the_one_that_releases_it() -> None:
    rig = Rig()
    rig.syncer.release_each = False
    await rig.loop.take(event(0, 5, webhook()))
    assert "ack 0@5" not in rig.journal
    rig.syncer.release_each = True
    await rig.loop.take(event(0, 6, webhook()))
    acks = [line for line in rig.journal if line.startswith("ack")]
    assert acks == ["ack 0@5", "ack 0@6"]  # in offset order, the earlier one first


async def test_an_unreadable_record_is_dead_lettered_then_acknowledged() -> None:
    rig = Rig()
    await rig.loop.take(event(1, 9, b"not json"))
    assert rig.journal[:3] == ["dead letter 1@9", "flush state", "ack 1@9"]


async def test_a_refused_key_parks_the_loop_with_nothing_acknowledged_and_says_why() -> None:
    rig = Rig()
    rig.syncer.fatal_at = 7
    await rig.loop.take(event(0, 6, webhook()))
    await rig.loop.take(event(0, 7, webhook()))
    assert rig.parked.is_set()
    assert "ack 0@7" not in rig.journal
    assert rig.journal.index("parked") > rig.journal.index("sync 0@7")
    assert rig.health.readiness() == (
        {"status": "failed", "reason": "MoEngage answered 401: check MOENGAGE_DATA_API_KEY"},
        False,
    )
    assert (0, 7) in rig.loop.held  # taken, never acknowledged: read again after the restart


async def test_copies_and_records_past_a_hole_are_neither_synced_nor_acknowledged() -> None:
    rig = Rig(guard=Guard({(0, 3): Verdict.DONE, (0, 9): Verdict.EARLY}))
    await rig.loop.take(event(0, 3, webhook()))
    await rig.loop.take(event(0, 9, webhook()))
    assert rig.journal == []


async def test_a_revocation_drops_what_was_taken_on_those_partitions_only() -> None:
    rig = Rig()
    rig.syncer.release_each = False
    await rig.loop.take(event(0, 1, webhook()))
    await rig.loop.take(event(1, 1, webhook()))
    rig.loop.revoked({0})
    assert set(rig.loop.held) == {(1, 1)}
    assert rig.syncer.forgotten == {0}
    rig.syncer.waiting = [SourceRef(TOPIC, 0, 1, b"k"), *rig.syncer.waiting]
    rig.syncer.release_each = True
    await rig.loop.take(event(1, 2, webhook()))
    acks = [line for line in rig.journal if line.startswith("ack")]
    assert acks == ["ack 1@1", "ack 1@2"]  # the revoked partition's old copy is never acknowledged


async def test_a_change_without_its_own_time_is_stamped_with_the_records_time_in_milliseconds() -> None:
    """faust gives a record's time in seconds; taken as milliseconds, a removal would look older than every
    snapshot and be dropped as stale."""
    rig = Rig()
    await rig.loop.take(event(0, 1, webhook()))
    [item] = rig.syncer.items
    assert isinstance(item, WebhookChange)
    assert item.time_ms == 1_700_000_000_250


async def test_the_loop_tells_progress_what_it_took_and_works_on() -> None:
    clock = [0.0]
    progress = Progress(10, clock=lambda: clock[0])
    rig = Rig()
    rig.loop = CohortLoop(
        Guard(), rig.syncer, Store(rig.journal), Publisher(rig.journal), lambda e: None, rig.health, progress=progress
    )
    progress.assigned([(TOPIC, 0), (TOPIC, 1)])
    clock[0] = 11.0
    await rig.loop.take(event(0, 1, webhook()))
    stall = progress.stall({(TOPIC, 0): 3, (TOPIC, 1): 3})
    assert stall is not None
    assert stall.partitions == ((TOPIC, 1),)  # partition 0 was just taken: only 1 has lag and nothing taken
