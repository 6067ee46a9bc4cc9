"""Which offsets may be acknowledged: the most safety-critical loop of the worker, with no faust in it.

A taken batch is cut into runs of at most ``max_run_bytes`` of input, in offset order. Run N+1 is mapped while
up to ``max_in_flight`` earlier runs are being delivered (their events share the delivery lanes, one user per
lane), and run N's messages are acknowledged only once all its events are final (delivered, dead-lettered,
dropped, filtered, or parked in the retry topic) and every earlier run's are acknowledged. So:

- acknowledgements follow offset order within the batch, whatever order the runs finish in;
- after a failure nothing more is acknowledged (a fatal answer parks the worker; anything else propagates and
  crashes it, and a restart replays from the last commit);
- a stop request between runs leaves the rest of the batch unacknowledged (replayed after restart), and a
  cancellation mid-run acknowledges nothing of that run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
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
    ) -> None:
        """``stopping``: true once shutdown began; ``on_fatal(error, first unacknowledged message)``;
        ``max_in_flight``: runs being delivered at once (each at most ``max_run_bytes`` of input in memory);
        ``holds(message)``: false once its partition was revoked (the next owner processes it);
        ``acknowledge(run)``: how a final run is acknowledged (the worker's app tells faust it is the agent's)."""
        self._processor = processor
        self._max_run_bytes = max_run_bytes
        self._stopping = stopping
        self._on_fatal = on_fatal
        self._max_in_flight = max(1, max_in_flight)
        self._parked = parked
        self._holds = holds
        self._acknowledge = acknowledge

    def _held(self, run: Sequence[Taken]) -> list[Taken]:
        return [taken for taken in run if self._holds(taken.message)]

    async def process(self, batch: Sequence[Taken]) -> None:
        in_flight: deque[tuple[asyncio.Task[BatchSummary], list[Taken]]] = deque()

        async def settle_oldest() -> None:
            task, run = in_flight[0]
            self._processor.flush()  # about to wait: what waits for a full request goes now
            await task
            in_flight.popleft()
            self._acknowledge(run)

        try:
            for whole in runs_by_size(batch, self._max_run_bytes):
                if self._stopping():
                    break
                # A member that was paused past its session learns at its next rebalance that the group moved on:
                # from then on, what it still holds of the partitions it lost is left to their new owner.
                run = self._held(whole)
                if not run:
                    continue
                prepared = await self._processor.prepare_yielding(source_messages(run, self._parked))
                while len(in_flight) >= self._max_in_flight:
                    await settle_oldest()
                if len(held := self._held(run)) < len(run):  # revoked while the runs before it were delivered
                    if not held:
                        continue
                    run = held
                    prepared = await self._processor.prepare_yielding(source_messages(run, self._parked))
                in_flight.append((asyncio.ensure_future(self._processor.finish(prepared)), run))
                await asyncio.sleep(0)  # let it put its first request on the wire before mapping the next run
            while in_flight:
                await settle_oldest()
        except FatalDeliveryError as exc:
            first = in_flight[0][1][0].message if in_flight else batch[0].message
            self._on_fatal(exc, first)
        finally:
            for task, _ in in_flight:
                if not task.done():
                    task.cancel()
                elif not task.cancelled():
                    task.exception()  # retrieved: a later run's failure is moot once an earlier one failed
