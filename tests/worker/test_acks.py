"""The ack loop without a broker: what may be acknowledged, and when."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from devkit.amplitude import AmplitudeService
from forwarder.amplitude.client import AmplitudeClient
from forwarder.amplitude.delivery import Deliverer, FatalDeliveryError
from forwarder.amplitude.limits import LIMITS
from forwarder.core import MappingRules
from forwarder.kafka.dead_letters import DeadLetterRecord, SourceRef
from forwarder.processing import BatchProcessor, BatchSummary, Prepared, SourceMessage
from forwarder.worker.acks import AckLoop, source_messages
from forwarder.worker.metrics import Metrics


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Taken:
    message: Message
    log: list[str]

    def ack(self) -> None:
        self.log.append(f"ack {self.message.offset}")


def batch(log: list[str], count: int, size: int = 100) -> list[Taken]:
    return [Taken(Message("src", 0, offset, b"k", b"x" * size), log) for offset in range(count)]


@dataclass
class FakeProcessor:
    """Each run's ``finish`` waits for its gate; ``fail_on`` raises there."""

    log: list[str]
    fail_on: int | None = None
    error: BaseException = field(default_factory=lambda: FatalDeliveryError("Amplitude refused the API key"))
    gates: dict[int, asyncio.Event] = field(default_factory=dict)
    waiting: asyncio.Event = field(default_factory=asyncio.Event)  # set when a run waits at its gate
    runs: int = 0
    offsets: dict[int, list[int]] = field(default_factory=dict)  # id(prepared) -> its messages' offsets

    async def prepare_yielding(self, messages: Sequence[SourceMessage]) -> Prepared:
        prepared = Prepared.empty(len(messages))
        self.offsets[id(prepared)] = [m.ref.offset for m in messages]
        return prepared

    def flush(self) -> None:
        self.log.append("flush")

    async def finish(self, prepared: Prepared) -> BatchSummary:
        run = self.runs
        self.runs += 1
        offsets = self.offsets[id(prepared)]
        self.log.append(f"post {offsets[0]}-{offsets[-1]}")
        if run in self.gates:
            self.waiting.set()
            await self.gates[run].wait()
        if run == self.fail_on:
            raise self.error
        return prepared.summary


def loop(processor: Any, fatal: list[Any] | None = None) -> AckLoop:
    seen = fatal if fatal is not None else []
    return AckLoop(processor, 300, lambda: False, lambda exc, first: seen.append((str(exc), first.offset)))


def acked(log: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in log if line.startswith("ack")]


def posts(log: list[str]) -> list[str]:
    return [line for line in log if line != "flush"]


async def test_runs_are_acknowledged_in_offset_order_each_after_its_post() -> None:
    log: list[str] = []
    await loop(FakeProcessor(log)).process(batch(log, 9))  # 3 messages of 100 bytes per 300-byte run
    assert acked(log) == list(range(9))
    assert log.index("post 0-2") < log.index("ack 0")
    assert log.index("post 3-5") < log.index("ack 3")


async def test_after_a_fatal_answer_nothing_more_is_acknowledged() -> None:
    log: list[str] = []
    fatal: list[Any] = []
    await loop(FakeProcessor(log, fail_on=1), fatal=fatal).process(batch(log, 9))
    assert acked(log) == [0, 1, 2]
    assert fatal == [("Amplitude refused the API key", 3)]  # the first message not acknowledged


async def test_any_other_failure_propagates_with_nothing_after_it_acknowledged() -> None:
    log: list[str] = []
    processor = FakeProcessor(log, fail_on=1, error=RuntimeError("the dead-letter topic refused the write"))
    with pytest.raises(RuntimeError):
        await loop(processor).process(batch(log, 9))
    assert acked(log) == [0, 1, 2]


async def test_a_stop_request_leaves_the_rest_of_the_batch_unacknowledged() -> None:
    log: list[str] = []
    stop = False

    class StopDuringFirstPost(FakeProcessor):
        async def finish(self, prepared: Prepared) -> BatchSummary:
            nonlocal stop
            stop = True  # SIGTERM arrives while run 1's POST is out
            return await super().finish(prepared)

    await AckLoop(StopDuringFirstPost(log), 300, lambda: stop, lambda exc, first: None).process(batch(log, 9))
    # Run 1 was out when the stop came: it finishes and is acknowledged. Runs 2 and 3 never start.
    assert acked(log) == [0, 1, 2]
    assert posts(log) == ["post 0-2", "ack 0", "ack 1", "ack 2"]


async def test_a_cancellation_mid_post_acknowledges_nothing_of_that_run() -> None:
    log: list[str] = []
    processor = FakeProcessor(log, gates={1: asyncio.Event()})
    task = asyncio.ensure_future(loop(processor).process(batch(log, 9)))
    await processor.waiting.wait()
    assert posts(log)[-1] == "post 3-5"
    task.cancel()  # the shutdown deadline passed with run 2's POST still out
    with pytest.raises(asyncio.CancelledError):
        await task
    assert acked(log) == [0, 1, 2]


async def test_a_throttled_event_is_parked_in_the_retry_topic_before_its_message_is_acknowledged() -> None:
    """With the real BatchProcessor and the local Amplitude service throttling one user."""
    log: list[str] = []

    class Sink:
        def __init__(self, name: str) -> None:
            self.name = name

        async def write(self, records: list[DeadLetterRecord]) -> None:
            for record in records:
                log.append(f"{self.name} {record.source.offset} {record.reason}")

    service = AmplitudeService(api_keys={"k"})
    service.faults.throttled_users = {"customer-hot"}
    client = AmplitudeClient(
        "http://amplitude.local/2/httpapi", SecretStr("k"), transport=httpx.ASGITransport(app=service.app)
    )
    processor = BatchProcessor(
        MappingRules(),
        Deliverer(client, LIMITS["http"], asyncio.sleep, defer_throttled=True),
        Sink("dead-letter"),
        Metrics(),
        retries=Sink("park"),
    )
    events = [
        {"event_code": "SMS_SENT", "event_uuid": f"e{i}", "uid": uid, "event_time": 1_700_000_000}
        for i, uid in enumerate(["customer-calm", "customer-hot", "customer-calm"])
    ]
    taken = [Taken(Message("src", 0, i, b"k", orjson.dumps(e)), log) for i, e in enumerate(events)]
    await AckLoop(processor, 1_000_000, lambda: False, lambda exc, first: None).process(taken)
    await client.aclose()
    assert log.index("park 1 throttled") < log.index("ack 1")
    assert acked(log) == [0, 1, 2]
    assert set(service.recorder.by_insert_id) == {"e0", "e2"}


async def test_runs_delivered_at_once_are_still_acknowledged_in_offset_order() -> None:
    """Three runs out at once; the last finishes first, the first last: nothing is acked until run 1 is final."""
    log: list[str] = []
    gates = {0: asyncio.Event(), 1: asyncio.Event(), 2: asyncio.Event()}
    processor = FakeProcessor(log, gates=gates)
    acks = AckLoop(processor, 300, lambda: False, lambda exc, first: None, max_in_flight=3)
    task = asyncio.ensure_future(acks.process(batch(log, 9)))
    for _ in range(100):  # each run is posted after the previous one's hand-off
        if processor.runs == 3:
            break
        await asyncio.sleep(0)
    assert posts(log) == ["post 0-2", "post 3-5", "post 6-8"]  # all three out before any answer
    gates[2].set()
    gates[1].set()
    await asyncio.sleep(0.01)
    assert acked(log) == []  # runs 2 and 3 are final, run 1 is not
    gates[0].set()
    await task
    assert acked(log) == list(range(9))


async def test_with_runs_in_flight_a_failure_acknowledges_only_the_runs_before_it() -> None:
    log: list[str] = []
    fatal: list[Any] = []
    processor = FakeProcessor(log, fail_on=1)
    acks = AckLoop(processor, 300, lambda: False, lambda exc, first: fatal.append(first.offset), max_in_flight=4)
    await acks.process(batch(log, 12))
    assert acked(log) == [0, 1, 2]
    assert fatal == [3]


def test_a_retry_topic_message_names_the_first_source_of_its_event_and_a_bare_one_names_none() -> None:
    record = DeadLetterRecord(b"{}", SourceRef("src", 2, 150, b"k"), "throttled", event_index=3, not_before_ms=1)

    @dataclass
    class Parked:
        topic: str = "src-retry"
        partition: int = 0
        offset: int = 7
        key: bytes | None = b"k"
        value: bytes = b"{}"
        headers: Any = None

    with_headers = Parked(headers=record.headers())
    (message,) = source_messages([Taken(with_headers, [])], parked=True)  # type: ignore[arg-type]
    assert message.parked_from == (SourceRef("src", 2, 150, None), 3)
    (bare,) = source_messages([Taken(Parked(), [])], parked=True)  # type: ignore[arg-type]
    assert bare.parked_from is None
    (live,) = source_messages([Taken(with_headers, [])])  # type: ignore[arg-type]
    assert live.parked_from is None


async def test_runs_of_a_partition_revoked_mid_batch_are_neither_processed_nor_acknowledged() -> None:
    """A member paused past its session learns of the new generation at its next rebalance: from then on what it
    still holds of the partitions it lost is the new owner's, even within the batch it is working on."""
    log: list[str] = []
    processor = FakeProcessor(log, gates={0: asyncio.Event()})
    held = {0}
    taken = [Taken(Message("src", offset % 2, offset, b"k", b"x" * 100), log) for offset in range(9)]
    loop = AckLoop(
        processor, 300, lambda: False, lambda exc, first: None, holds=lambda message: message.partition in held
    )
    task = asyncio.ensure_future(loop.process(taken))
    await processor.waiting.wait()  # the first run is being delivered
    held.clear()  # partition 0 revoked; partition 1 was never held here
    processor.gates[0].set()
    await task
    # The first run (offset 0, 2 of partition 0) had been started and is final; nothing after it is processed.
    assert log == ["post 0-2", "flush", "ack 0", "ack 2"]


def offsets_from(log: list[str], start: int, count: int) -> list[Taken]:
    return [Taken(Message("src", 0, offset, b"k", b"x" * 100), log) for offset in range(start, start + count)]


async def test_runs_in_flight_carry_over_into_the_next_batch_and_are_still_acknowledged_in_offset_order() -> None:
    """``submit`` returns with its runs out: the next batch is mapped and posted while they are; acknowledgements
    follow offset order across batches, and each batch is told when its last run is acknowledged."""
    log: list[str] = []
    gates = {0: asyncio.Event()}
    processor = FakeProcessor(log, gates=gates)
    acks = AckLoop(processor, 300, lambda: False, lambda exc, first: None, max_in_flight=4)
    async with acks.running():
        await acks.submit(offsets_from(log, 0, 3), settled=lambda: log.append("batch 1 final"))
        await acks.submit(offsets_from(log, 3, 6), settled=lambda: log.append("batch 2 final"))
        assert posts(log) == ["post 0-2", "post 3-5", "post 6-8"]  # batch 2 went out with batch 1's run waiting
        await asyncio.sleep(0.01)
        assert acked(log) == []  # run 1 is not final, so nothing after it is acknowledged
        assert acks.in_flight == 3
        gates[0].set()
    assert acked(log) == list(range(9))  # leaving ``running`` settled what was in flight
    assert log.index("ack 2") < log.index("batch 1 final") < log.index("ack 3")
    assert log.index("ack 8") < log.index("batch 2 final")


async def test_a_failure_of_a_run_left_in_flight_ends_the_agent_with_that_failure() -> None:
    """No later batch needs to come for it to surface: the worker crashes, replaying from the last commit."""
    log: list[str] = []
    processor = FakeProcessor(log, fail_on=1, error=RuntimeError("the retry topic refused the write"))
    acks = AckLoop(processor, 300, lambda: False, lambda exc, first: None, max_in_flight=4)

    async def agent() -> None:
        async with acks.running():
            await acks.submit(batch(log, 9))
            await asyncio.Event().wait()  # the agent waits for messages that never come

    with pytest.raises(RuntimeError, match="retry topic"):
        await agent()
    assert acked(log) == [0, 1, 2]


async def test_the_drain_is_told_of_each_run_in_flight_until_it_is_acknowledged() -> None:
    log: list[str] = []
    held: list[int] = []
    gates = {0: asyncio.Event()}
    acks = AckLoop(FakeProcessor(log, gates=gates), 300, lambda: False, lambda exc, first: None, 4, on_hold=held.append)
    async with acks.running():
        await acks.submit(batch(log, 6))
        assert sum(held) == 2  # two runs out after submit returned
        gates[0].set()
    assert sum(held) == 0
    assert held.count(1) == 2


async def test_a_batch_waiting_for_room_sends_what_the_lanes_hold_while_the_tail_task_waits() -> None:
    """Lanes send a part-filled request only when told to flush. The tail task, settling the last batch's runs,
    leaves them to fill while the next batch is mapped; once that batch waits for room it must flush, or the run
    it waits for never leaves (a worker alive and not delivering)."""
    log: list[str] = []

    class Lanes(FakeProcessor):
        flushes: list[asyncio.Event] = []  # noqa: RUF012  # one per run waiting for company

        def flush(self) -> None:
            for waiting in self.flushes:
                waiting.set()
            super().flush()

        async def prepare_yielding(self, messages: Sequence[SourceMessage]) -> Prepared:
            await asyncio.sleep(0.01)  # mapping takes a while: the tail task moves on meanwhile
            return await super().prepare_yielding(messages)

        async def finish(self, prepared: Prepared) -> BatchSummary:
            company = asyncio.Event()  # a part-filled request, waiting for company or a flush
            self.flushes.append(company)
            await company.wait()
            return await super().finish(prepared)

    first_answer = asyncio.Event()
    acks = AckLoop(Lanes(log, gates={0: first_answer}), 300, lambda: False, lambda exc, first: None, max_in_flight=2)
    async with acks.running():
        await asyncio.wait_for(acks.submit(offsets_from(log, 0, 3)), 2)  # run 1 out; the tail task waits for it
        asyncio.get_running_loop().call_later(0.015, first_answer.set)
        # Run 2 goes out (10 ms); while run 3 is mapped, run 1 is answered and the tail task moves on to wait for
        # run 2; run 3 goes out (20 ms); run 4 (30 ms) waits for room.
        await asyncio.wait_for(acks.submit(offsets_from(log, 3, 9)), 2)
    assert acked(log) == list(range(12))


async def test_a_stop_asked_for_while_a_run_waits_for_room_sends_nothing_more() -> None:
    """The next batch was taken and its run mapped while the one before was out; the stop comes then: the mapped
    run never goes out, so shutdown commits exactly what was delivered."""
    log: list[str] = []
    stop = False
    gates = {0: asyncio.Event()}
    acks = AckLoop(FakeProcessor(log, gates=gates), 300, lambda: stop, lambda exc, first: None, max_in_flight=1)
    async with acks.running():
        await acks.submit(offsets_from(log, 0, 3))
        second = asyncio.ensure_future(acks.submit(offsets_from(log, 3, 3)))
        await asyncio.sleep(0.01)  # run 2 is mapped and waits for room
        stop = True  # SIGTERM
        gates[0].set()
        await second
    assert posts(log) == ["post 0-2", "ack 0", "ack 1", "ack 2"]
