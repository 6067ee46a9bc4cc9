"""Which offsets may be acknowledged: the most safety-critical loop of the worker, with no faust in it.

A taken batch is cut into runs of at most ``max_run_bytes`` of input, in offset order. Run N+1 is mapped while
up to ``max_in_flight`` earlier runs are being delivered (their events share the delivery lanes, one user per
lane), and run N's messages are acknowledged only once all its events are final (delivered, dead-lettered,
dropped, filtered, or parked in the retry topic) and every earlier run's are acknowledged. The worker's agent
hands batches in with ``submit``, which returns once the batch's runs are all on their way: the runs in flight
carry over into the next batch, so a batch's end is no pause in delivery (at Amplitude's real round trip, draining
every batch cost a third of the throughput). A task of ``running``'s settles what is left in flight meanwhile. So:

- acknowledgements follow offset order within the batch, whatever order the runs finish in;
- after a failure nothing more is acknowledged (a fatal answer parks the worker; anything else propagates and
  crashes it, and a restart replays from the last commit);
- a stop request between runs leaves the rest of the batch unacknowledged (replayed after restart), and a
  cancellation mid-run acknowledges nothing of that run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from forwarder.amplitude.delivery import FatalDeliveryError
from forwarder.kafka.dead_letters import SourceRef, header_map, route_of
from forwarder.kafka.order import Taken
from forwarder.processing import BatchSummary, Prepared, SourceMessage


class Processor(Protocol):
    """The two halves of ``BatchProcessor``: map (CPU), then deliver and store (I/O)."""

    async def prepare_yielding(self, messages: Sequence[SourceMessage]) -> Prepared: ...

    async def finish(self, prepared: Prepared) -> BatchSummary: ...

    def flush(self) -> None: ...


def runs_by_size(batch: Sequence[Taken], max_bytes: int) -> list[list[Taken]]:
    """Consecutive runs of at most ``max_bytes`` of input, each acked as soon as it is final.

    A taken batch can hold hundreds of 100-event messages; acking run by run bounds what a crash replays.
    """
    runs: list[list[Taken]] = []
    size = 0
    for taken in batch:
        length = len(taken.message.value or b"")
        if runs and size + length <= max_bytes:
            runs[-1].append(taken)
            size += length
        else:
            runs.append([taken])
            size = length
    return runs


def source_messages(run: Sequence[Taken], parked: bool = False) -> list[SourceMessage]:
    """``parked``: messages of the retry topic, whose headers name where each event first came from."""
    return [
        SourceMessage(
            SourceRef(m.topic, m.partition, m.offset, m.key),
            m.value or b"",
            parked_from(m) if parked else None,
            route_of(m.headers),
        )
        for m in (taken.message for taken in run)
    ]


def parked_from(message: Any) -> tuple[SourceRef, int] | None:
    headers = message.headers or []
    if isinstance(headers, dict):
        headers = list(headers.items())
    fields = header_map(list(headers))
    try:
        ref = SourceRef(fields["source_topic"], int(fields["source_partition"]), int(fields["source_offset"]), None)
        return ref, int(fields.get("event_index") or 0)
    except (KeyError, ValueError):
        return None


def acknowledge_each(run: Sequence[Taken]) -> None:
    for taken in run:
        taken.ack()


@dataclass(eq=False)
class _InFlight:
    task: asyncio.Task[BatchSummary]
    run: list[Taken]
    # Called once the run is acknowledged: the last run of a batch tells the batch's owner it is final.
    settled: Callable[[], None] | None = None


class AckLoop:
    def __init__(
        self,
        processor: Processor,
        max_run_bytes: int,
        stopping: Callable[[], bool],
        on_fatal: Callable[[FatalDeliveryError, Any], None],
        max_in_flight: int = 1,
        parked: bool = False,
        holds: Callable[[Any], bool] = lambda message: True,
        acknowledge: Callable[[Sequence[Taken]], None] = acknowledge_each,
        on_hold: Callable[[int], None] = lambda change: None,
    ) -> None:
        """``stopping``: true once shutdown began; ``on_fatal(error, first unacknowledged message)``;
        ``max_in_flight``: runs being delivered at once (each at most ``max_run_bytes`` of input in memory);
        ``holds(message)``: false once its partition was revoked (the next owner processes it);
        ``acknowledge(run)``: how a final run is acknowledged (the worker's app tells faust it is the agent's);
        ``on_hold(+1 / -1)``: a run went in flight / left it (the worker's drain waits for none in flight)."""
        self._processor = processor
        self._max_run_bytes = max_run_bytes
        self._stopping = stopping
        self._on_fatal = on_fatal
        self._max_in_flight = max(1, max_in_flight)
        self._parked = parked
        self._holds = holds
        self._acknowledge = acknowledge
        self._on_hold = on_hold
        self._in_flight: deque[_InFlight] = deque()
        # One settles at a time (``submit`` making room, the tail task): acknowledgements stay in offset order.
        self._settling = asyncio.Lock()
        self._halted = False  # after a fatal answer: nothing more is delivered or acknowledged
        self._tasks: asyncio.TaskGroup | None = None
        self._submitting = False  # mapping runs: lanes may wait to fill their requests

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def _held(self, run: Sequence[Taken]) -> list[Taken]:
        return [taken for taken in run if self._holds(taken.message)]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AckLoop]:
        """While open, what ``submit`` leaves in flight is settled in the background, and a failure there ends the
        block with that failure (the agent crashes; nothing after the failed run was acknowledged)."""
        try:
            async with asyncio.TaskGroup() as tasks:  # on a normal exit, waits until what is in flight is settled
                self._tasks = tasks
                try:
                    yield self
                except BaseException:
                    self._cancel_in_flight()
                    raise
                finally:
                    self._tasks = None
        except BaseExceptionGroup as group:
            raise group.exceptions[0] from None
        finally:
            self._cancel_in_flight()

    async def process(self, batch: Sequence[Taken]) -> None:
        """``submit``, then settle every run: returns once the batch is acknowledged (or a fatal answer stopped it)."""
        try:
            await self.submit(batch)
            while self._in_flight:
                await self._settle_oldest()
        finally:
            self._cancel_in_flight()

    async def submit(self, batch: Sequence[Taken], settled: Callable[[], None] | None = None) -> None:
        """Maps the batch's runs and hands each to delivery, waiting for room (``max_in_flight``) by settling the
        oldest. ``settled``: called once the batch's last run is acknowledged (or at once when none went out)."""
        self._submitting = True
        try:
            last = await self._submit_runs(batch)
        finally:
            self._submitting = False
        if last is None:
            if settled is not None:
                settled()
            return
        last.settled = settled
        if self._tasks is not None:
            self._processor.flush()  # the agent goes back to wait for messages: what waits for company goes now
            self._tasks.create_task(self._settle_all())

    async def _submit_runs(self, batch: Sequence[Taken]) -> _InFlight | None:
        last: _InFlight | None = None
        for whole in runs_by_size(batch, self._max_run_bytes):
            if self._stopping() or self._halted:
                break
            # A member that was paused past its session learns at its next rebalance that the group moved on:
            # from then on, what it still holds of the partitions it lost is left to their new owner.
            run = self._held(whole)
            if not run:
                continue
            prepared = await self._processor.prepare_yielding(source_messages(run, self._parked))
            while len(self._in_flight) >= self._max_in_flight and not self._halted:
                await self._settle_oldest()
            if self._halted or self._stopping():  # a stop asked for while waiting for room: nothing new goes out
                break
            if len(held := self._held(run)) < len(run):  # revoked while the runs before it were delivered
                if not held:
                    continue
                run = held
                prepared = await self._processor.prepare_yielding(source_messages(run, self._parked))
            last = _InFlight(asyncio.ensure_future(self._processor.finish(prepared)), run)
            self._in_flight.append(last)
            self._on_hold(1)
            await asyncio.sleep(0)  # let it put its first request on the wire before mapping the next run
        return last

    async def _settle_all(self) -> None:
        while self._in_flight and not self._halted:
            await self._settle_oldest(background=True)

    async def _settle_oldest(self, background: bool = False) -> None:
        """``background``: the tail task, which leaves requests to fill while ``submit`` maps more runs."""
        if not background:
            # About to wait (perhaps for the tail task, itself waiting for the oldest run): what waits in the lanes
            # for a full request goes now.
            self._processor.flush()
        async with self._settling:
            if not self._in_flight or self._halted:
                return
            oldest = self._in_flight[0]
            if background and not self._submitting and not oldest.task.done():
                self._processor.flush()
            try:
                await asyncio.shield(oldest.task)
            except FatalDeliveryError as exc:
                self._halted = True
                self._on_fatal(exc, oldest.run[0].message)
                self._cancel_in_flight()
                return
            self._in_flight.popleft()
            self._on_hold(-1)
            self._acknowledge(oldest.run)
            if oldest.settled is not None:
                oldest.settled()

    def _cancel_in_flight(self) -> None:
        """Nothing in flight is acknowledged any more: the worker stops, or a run failed."""
        while self._in_flight:
            entry = self._in_flight.popleft()
            self._on_hold(-1)
            if not entry.task.done():
                entry.task.cancel()
            elif not entry.task.cancelled():
                entry.task.exception()  # retrieved: a later run's failure is moot once an earlier one failed
