"""faust's Kafka transport with a cheaper per-message hand-off from the fetcher to the streams.

faust's fetch loop hands every message to the streams through ``Service.wait_first(callback(message),
suspend_flow.wait())``, which schedules four tasks per message so that a callback blocked during a rebalance can
be abandoned. The callback almost never blocks: it puts the event on the stream's buffer without waiting (a full
buffer pauses the partition instead). On a topic of single-event records those tasks were the largest cost of
reading (see the closing note of the performance issue and ``bench/``).

``FastDrainConsumer`` runs the callback inline, one step: when it completes without suspending (the common case)
no task is created. When it does suspend (flow control during a rebalance, a full buffer, a full producer buffer)
the rest of it runs as a task raced against ``suspend_flow``, exactly as faust does it. Offsets, gaps and
commits are handled as in faust's own loop.

It also tells the ``LossWatch`` (``forwarder.worker.lost_offsets``) where each partition was seeked to and which
offsets each pull returned, so offsets Kafka deleted before they were read are found rather than skipped in silence.

Measured on a topic of 21,800 records (200,000 events), a no-op faust agent that only acks: 3,505 -> 6,162
records/s with the fetcher hand-off alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Generator
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

from forwarder.worker.lost_offsets import LossWatch, PullCounter

# faust waits up to a second for records of the partitions whose buffers have room; a partition that drains
# meanwhile is not fetched until that wait ends, and the agent idles. A short wait costs an idle worker ten
# cross-thread polls a second.
FETCH_WAIT_S = 0.1


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
        # Only ever created by ForwarderApp, which owns both.
        app: Any = self.app
        self._loss_watch: LossWatch = app.loss_watch
        self._pulls: PullCounter = app.pulls

    async def seek_to_committed(self) -> Any:
        offsets = await super().seek_to_committed()
        for tp, offset in offsets.items():
            self._loss_watch.seeked(tp.topic, tp.partition, offset)
        return offsets

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
                    read_offset = get_read_offset(tp)
                    if read_offset is not None and offset < read_offset:
                        continue  # already seen (faust drops these too)
                    gap = offset - (read_offset or 0)
                    if gap > 1 and read_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, read_offset + 1, offset)
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
