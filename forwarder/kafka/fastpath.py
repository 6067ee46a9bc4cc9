"""faust's Kafka transport: a cheaper hand-off from the fetcher to the streams, and commits that never skip.

faust's fetch loop hands every message to the streams through ``Service.wait_first(callback(message),
suspend_flow.wait())``, which schedules four tasks per message so that a callback blocked during a rebalance can
be abandoned. The callback almost never blocks: it puts the event on the stream's buffer without waiting (a full
buffer pauses the partition instead). On a topic of single-event records those tasks were the largest cost of
reading (see the closing note of the performance issue and ``bench/``).

``FastDrainConsumer`` runs the callback inline, one step: when it completes without suspending (the common case)
no task is created. When it does suspend (flow control during a rebalance, a full buffer, a full producer buffer)
the rest of it runs as a task raced against ``suspend_flow``, exactly as faust does it.

It carries the offset discipline of every agent (``forwarder.kafka.order``): the commit advances only over a
contiguous run of acknowledged offsets from the committed offset (``advance``); offsets skipped between fetched
records are no longer taken as done (faust's gap tree) nor dropped as seen, since the guard reads them again;
what was acknowledged is committed before revoked partitions are released; and ``commit_states`` shows a commit
held behind a hole.

It also tells the ``LossWatch`` (``forwarder.kafka.lost_offsets``) where each partition was seeked to and which
offsets each pull returned, so offsets Kafka deleted before they were read are found rather than skipped in silence.

Measured on a topic of 21,800 records (200,000 events), a no-op faust agent that only acks: 3,505 -> 6,162
records/s with the fetcher hand-off alone.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from typing import Any, cast

import faust
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from forwarder.kafka.lost_offsets import LossWatch, PullCounter
from forwarder.kafka.order import OffsetGuard, OffsetRange, Pending, Taken

log = logging.getLogger("forwarder.consumer")

# faust waits up to a second for records of the partitions whose buffers have room; a partition that drains
# meanwhile is not fetched until that wait ends, and the agent idles. A short wait costs an idle worker ten
# cross-thread polls a second.
FETCH_WAIT_S = 0.1
# A commit before releasing revoked partitions must not hold the rebalance long.
REVOKE_COMMIT_TIMEOUT_S = 10.0


def advance(base: int, acked: list[int], index: set[int], lost: list[tuple[int, int]] | None) -> int | None:
    """The next offset to commit: past the run of acknowledged offsets (and ranges lost to retention) that starts at
    ``base``, the committed offset. Removes what it passes from ``acked``/``index``/``lost``; None: nothing to pass.

    faust's own arithmetic (``Consumer._new_offset``) commits the first run of acknowledged offsets wherever it
    starts when at most one offset is missing before it, or when nothing was ever committed: a record dropped at
    the head of a partition is then skipped for good.
    """
    acked.sort()
    at = bisect.bisect_left(acked, base)  # below the base: committed already
    offset = base
    while True:
        if at < len(acked) and acked[at] <= offset:
            offset += acked[at] == offset
            at += 1
        elif lost and lost[0][1] < offset:
            del lost[0]
        elif lost and lost[0][0] <= offset:
            offset = lost.pop(0)[1] + 1
        else:
            break
    if at:
        index.difference_update(acked[:at])
        del acked[:at]
    return offset if offset > base else None


async def _resume(coroutine: Coroutine[Any, Any, Any], awaiting: Any) -> Any:
    """Drive ``coroutine`` on, from the point where its first step suspended on ``awaiting``."""
    while True:
        try:
            if awaiting is None:
                await asyncio.sleep(0)  # a bare yield: it asked for one turn of the loop
            else:
                await _WaitFor(awaiting)
        except asyncio.CancelledError as cancelled:
            # As a task's cancellation would: the callback sees CancelledError at its await and may clean up.
            try:
                coroutine.throw(cancelled)
            except (asyncio.CancelledError, StopIteration):
                pass
            else:
                coroutine.close()  # it swallowed the cancellation and waits again: stop it here
            raise
        try:
            awaiting = coroutine.send(None)
        except StopIteration as stop:
            return stop.value


class _WaitFor:
    """Awaits a future the inner coroutine yielded without consuming its result: the coroutine reads it itself
    when sent ``None`` (asyncio's ``Future.__await__`` returns ``self.result()`` once done)."""

    def __init__(self, future: Any) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, None]:
        if not self._future.done():
            self._future._asyncio_future_blocking = True
            yield self._future


class FastDrainConsumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._buffer_drained = asyncio.Event()
        # Only ever created by a GuardedApp, which owns both.
        app: Any = self.app
        self._loss_watch: LossWatch = app.loss_watch
        self._pulls: PullCounter = app.pulls
        # Where this assignment's reading of each partition began: the committed offset, or where a group that never
        # committed there started. The commit base when faust has no committed offset (it keeps none for 0).
        self._reading_from: dict[TP, int] = {}
        # Partitions of this assignment the group never committed: their start is the log start, or lower.
        self._never_committed: set[TP] = set()
        # Offsets Kafka deleted before they were read (the guard found them below the log start): passable.
        self._lost: dict[TP, list[tuple[int, int]]] = {}
        # True only while an agent acknowledges what it processed (GuardedApp.acknowledge).
        self.agent_acking = False

    def ack(self, message: Any) -> bool:
        """Only an agent's acknowledgement counts. faust's stream iterator acknowledges the messages it skips (of a
        previous generation, or taken while flow is suspended for a rebalance) "so that the lag would not
        increase": such a message was never processed, and its offset must never be committed (seen in the
        rebalance storm: a partition that came back to the worker was committed past two records nobody read)."""
        if not self.agent_acking and self.app.topics.acks_enabled_for(message.topic):
            return False
        return bool(super().ack(message))

    async def _seek(self, partition: TP, offset: int) -> None:
        """On the consumer's own thread. faust's ``ThreadDelegateConsumer._seek`` calls aiokafka's ``seek`` from the
        app's thread, which deletes the partition from the fetcher's records while the consumer thread may be
        iterating them (``fetched_records``: a KeyError that crashed the worker; seen in the rebalance storm once
        every rebalance seeks a never-committed partition). aiokafka's consumer belongs to one event loop."""
        thread: Any = self._thread
        await thread.call_thread(thread.seek, partition, offset)

    async def seek_to_committed(self) -> Any:
        offsets = await super().seek_to_committed()
        for tp, offset in offsets.items():
            self._loss_watch.seeked(tp.topic, tp.partition, offset)
            if offset is not None and offset >= 0:
                self._reading_from[tp] = offset
                self._never_committed.discard(tp)
            elif tp not in self._reading_from:
                # Never committed: reading begins at the log start (auto_offset_reset=earliest). Asked once per
                # assignment: faust seeks again later (flow not active), when the position has moved on.
                try:
                    self._reading_from[tp] = await self.log_start(tp.topic, tp.partition)
                    self._never_committed.add(tp)
                except Exception as exc:  # asked again when its first record arrives
                    fields = {"tp": str(tp), "error": repr(exc)}
                    log.warning("no start offset for a new partition", extra={"fields": fields})
        await self._seek_uncommitted_to_start(offsets)
        return offsets

    async def _seek_uncommitted_to_start(self, offsets: Mapping[TP, int | None]) -> None:
        """aiokafka seeks a partition only to a committed offset above 0. One never committed (or committed at 0)
        keeps the position its fetches reached, past records faust may just have cleared from its buffers (a
        rebalance; seen in the rebalance storm on the retry topic, where nothing after them showed the guard a
        hole). It is sought, as a committed one is, to where the group's reading of it begins."""
        for tp, offset in offsets.items():
            start = self._reading_from.get(tp)
            if start is None or (offset is not None and offset > 0):
                continue
            try:
                await self.seek(tp, start)
            except IllegalStateError:  # revoked meanwhile: its next owner reads it from the start
                continue

    # The offset guard's side (forwarder.kafka.order.ReadingSide).

    async def reading_start(self, topic: str, partition: int, first: int) -> int:
        tp = TP(topic, partition)
        start = self._reading_from.get(tp)
        if start is None:  # a record ahead of this assignment's seek: ask the group, through this consumer
            thread: Any = self._thread
            client = thread._ensure_consumer()
            committed = await thread.call_thread(client.committed, TopicPartition(topic, partition))
            if committed is not None and committed >= 0:
                start = committed
            else:
                start = await self.log_start(topic, partition)
                self._never_committed.add(tp)
            self._reading_from[tp] = start
        if first < start and tp in self._never_committed:
            # The log start moved up between the client's reset and the question: reading began lower. The commit
            # starts from the same offset as the guard.
            start = self._reading_from[tp] = first
        return start

    async def seek_back(self, topic: str, partition: int, offset: int) -> None:
        try:
            await self.seek(TP(topic, partition), offset)
        except IllegalStateError:  # revoked meanwhile: its next owner reads it from the committed offset
            log.info("a partition being revoked was not sought back", extra={"fields": {"tp": f"{topic}/{partition}"}})

    async def log_start(self, topic: str, partition: int) -> int:
        tp = TP(topic, partition)
        return int((await self.earliest_offsets(tp))[tp])

    async def reread_unseen(self, topic: str, partition: int, expected: int | None) -> OffsetRange | None:
        """A stalled partition whose position is past records its agent never got: faust dropped the last records
        it fetched (a rebalance cleared the stream buffer; a never-committed partition is not sought back) and no
        record came after them for the guard to notice. Sought back to the first of them; the range, or None."""
        tp = TP(topic, partition)
        if tp not in self.assignment():
            return None
        start = expected if expected is not None else self._commit_base(tp)
        position = await self.position(tp)
        if start is None or position is None or position <= start:
            return None
        await self.seek_back(topic, partition, start)
        return OffsetRange(topic, partition, start, position - 1)

    def pass_lost(self, topic: str, partition: int, first: int, last: int) -> None:
        ranges = self._lost.setdefault(TP(topic, partition), [])
        ranges.append((first, last))
        ranges.sort()

    # The commit: never past an offset that was not acknowledged (faust's _new_offset can jump one, and never
    # moves again past a longer hole; shared/spec/faust-delivery.md).

    def _commit_base(self, tp: TP) -> int | None:
        committed = self._committed_offset.get(tp)
        return committed if committed is not None else self._reading_from.get(tp)

    def _new_offset(self, tp: TP) -> int | None:
        """The end of the run of acknowledged (or lost) offsets that starts at the commit base; None: no move."""
        self._gap.pop(tp, None)  # faust's gap tree treats skipped offsets as acknowledged: the guard decides instead
        acked = self._acked[tp]
        base = self._commit_base(tp)
        if not acked or base is None:
            return None
        return advance(base, acked, self._acked_index[tp], self._lost.get(tp))

    def commit_states(self) -> dict[tuple[str, int], Pending]:
        """Every assigned partition's next offset to commit, and whether a hole holds it (``CommitWatch``)."""
        states: dict[tuple[str, int], Pending] = {}
        acks_enabled_for = self.app.topics.acks_enabled_for
        for tp in self.assignment():
            base = self._commit_base(tp)
            if base is None or not acks_enabled_for(tp.topic):
                continue
            acked = self._acked.get(tp) or []
            blocked = bool(acked) and base not in self._acked_index[tp] and max(acked) > base
            if blocked and any(first <= base <= last for first, last in self._lost.get(tp, ())):
                blocked = False
            states[(tp.topic, tp.partition)] = Pending(base, blocked)
        return states

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        app: Any = self.app
        guard: OffsetGuard | None = app.guard
        if guard is not None:  # what is still in hand of these partitions is not processed any further here
            guard.forget((tp.topic, tp.partition) for tp in revoked)
        await self._commit_before_release(revoked)
        for tp in revoked:
            self._reading_from.pop(tp, None)
            self._never_committed.discard(tp)
            self._lost.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def _commit_before_release(self, revoked: set[TP]) -> None:
        """What was acknowledged is committed before the partitions go (faust would discard it, and the next owner
        would deliver it again). A member the group already left behind cannot commit: that is said, not raised."""
        tps = {tp for tp in revoked if self._acked.get(tp)}
        if not tps or self.app.should_stop:
            return
        try:
            await asyncio.wait_for(self._commit_now(tps), timeout=REVOKE_COMMIT_TIMEOUT_S)
        except Exception as exc:
            log.info("could not commit before releasing partitions", extra={"fields": {"error": repr(exc)}})

    async def _commit_now(self, tps: set[TP]) -> None:
        await self.maybe_wait_for_commit_to_finish()  # a commit under way may not include these: then one more
        await self.commit(tps)

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109 - faust's signature
        self._pulls.begin()
        try:
            records = await super()._getmany(active_partitions, timeout)
            for tp, messages in records.items():
                if messages:
                    self._loss_watch.pulled(tp.topic, tp.partition, messages[0].offset, messages[-1].offset)
            return records
        finally:
            self._pulls.end()

    def on_buffer_drop(self, tp: Any) -> None:
        super().on_buffer_drop(tp)
        self._buffer_drained.set()

    async def _wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109 - faust's signature
        # faust sleeps a fixed second when every partition is paused because its stream buffer is full; the
        # worker then idles up to a second after the agent has taken its batch. Wake when a buffer drains.
        if self.flow_active and not self.app.client_only and not self._get_active_partitions():
            self._buffer_drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._buffer_drained.wait(), timeout)
        return await super()._wait_next_records(timeout)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised on a real broker
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspend_flow = self.suspend_flow
        sleep = asyncio.sleep
        yield_every = 100
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                messages = getmany(timeout=FETCH_WAIT_S)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in messages:
                    since_yield += 1
                    if since_yield > yield_every:
                        await sleep(0)
                        since_yield = 0
                    offset = message.offset
                    # faust drops offsets below the read offset as seen and registers skipped offsets as a gap that
                    # the commit passes. On acknowledged topics the offset guard decides both: a record read again
                    # after its seek back must reach it, and a skip must never be passed as done.
                    if not acks_enabled_for(message.topic):
                        read_offset = get_read_offset(tp)
                        if read_offset is not None and offset < read_offset:
                            continue  # already seen (faust drops these too)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if suspend_flow.is_set():
                        await self.wait_first(callback(message), suspend_flow.wait())
                    else:
                        # faust's callbacks are coroutine functions (ConsumerCallback says Awaitable).
                        coroutine = cast(Coroutine[Any, Any, None], callback(message))
                        try:
                            awaiting = coroutine.send(None)
                        except StopIteration:
                            pass
                        else:
                            await self.wait_first(_resume(coroutine, awaiting), suspend_flow.wait())
                    set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class Transport(faust_aiokafka.Transport):
    Consumer = FastDrainConsumer


class _Reading:
    """The guard's view of the app's consumer, which exists only once the app runs."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    def _consumer(self) -> FastDrainConsumer:
        return cast(FastDrainConsumer, self._app.consumer)

    async def reading_start(self, topic: str, partition: int, first: int) -> int:
        return await self._consumer().reading_start(topic, partition, first)

    async def seek_back(self, topic: str, partition: int, offset: int) -> None:
        await self._consumer().seek_back(topic, partition, offset)

    async def log_start(self, topic: str, partition: int) -> int:
        return await self._consumer().log_start(topic, partition)

    def pass_lost(self, topic: str, partition: int, first: int, last: int) -> None:
        self._consumer().pass_lost(topic, partition, first, last)


class GuardedApp(faust.App):
    """A faust app on the fork's consumer, with one offset guard for all its agents (``guard_with``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Filled by the consumer (seeks and pulls), read by the watchdog.
        self.loss_watch = LossWatch()
        self.pulls = PullCounter()
        self.guard: OffsetGuard | None = None

    def guard_with(
        self, on_gap: Callable[[OffsetRange], None], on_lost: Callable[[OffsetRange], Awaitable[None]]
    ) -> OffsetGuard:
        self.guard = OffsetGuard(_Reading(self), on_gap, on_lost)
        return self.guard

    def commit_states(self) -> dict[tuple[str, int], Pending]:
        return cast(FastDrainConsumer, self.consumer).commit_states()

    async def reread_unseen(self, partitions: Sequence[tuple[str, int]]) -> list[OffsetRange]:
        """Of these stalled partitions, the ranges fetched but never handed to their agent, each sought back to."""
        consumer = cast(FastDrainConsumer, self.consumer)
        found = []
        for topic, partition in partitions:
            expected = self.guard.expected(topic, partition) if self.guard is not None else None
            unseen = await consumer.reread_unseen(topic, partition, expected)
            if unseen is not None:
                found.append(unseen)
        return found

    def acknowledge(self, records: Sequence[Taken]) -> None:
        """The agents' acknowledgement of records they processed: the only one the consumer counts."""
        consumer = cast(FastDrainConsumer, self.consumer)
        consumer.agent_acking = True
        try:
            for taken in records:
                taken.ack()
        finally:
            consumer.agent_acking = False

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
