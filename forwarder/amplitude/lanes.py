"""Several POSTs in flight, one user's events still in order: lanes keyed by the user.

Amplitude analyses every event by its own ``time``, but applies user properties (``FORWARDER_USER_PROPERTIES``)
in the order events arrive, and anything that reads a user's stream as it arrives (a webhook of Amplitude's) sees
it as sent: one user's events are kept in order. An event goes to the lane
of its ``user_id`` (else its ``device_id``); each lane sends one request at a time, and a request takes what
its lane holds, from every run waiting, up to one request's worth: at Amplitude's real round trip (~150 ms)
one lane is capped at ~6,700 events/s, ``count`` lanes at ``count`` times that.

Each ``deliver`` call still returns the report of exactly its events, so ``BatchProcessor`` and the ack loop
keep their contract: a run's messages are acknowledged once all its events are final, in offset order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from forwarder.amplitude.delivery import DeadLetter, Deliverer, DeliveryReport
from forwarder.core.outcomes import Forwarded


@dataclass(eq=False)
class _Ticket:
    """One ``deliver`` call: its events, its report, how many of them are not final yet."""

    items: Sequence[Forwarded]
    report: DeliveryReport = field(default_factory=DeliveryReport)
    remaining: int = 0
    done: asyncio.Future[DeliveryReport] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def settle(self, count: int) -> None:
        self.remaining -= count
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(self.report)


@dataclass
class _Lane:
    waiting: deque[tuple[_Ticket, list[int]]] = field(default_factory=deque)
    size: int = 0  # events waiting
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Lanes:
    def __init__(self, deliverer: Deliverer, count: int, events_per_request: int) -> None:
        self._deliverer = deliverer
        self._count = count
        self._per_request = events_per_request
        self._lanes = [_Lane() for _ in range(count)]
        # A lane sends once it holds half a request (each request costs ~1.5 ms of CPU whatever its size, so
        # requests stay large), or anything at all once the caller waits for results (``flush``). Half, not
        # full: with ``count`` runs in flight, each lane fills halfway after half of them, so requests are out
        # while the next runs are mapped.
        self._fill = max(1, events_per_request // 2)
        self._flushing = False

    def flush(self) -> None:
        """Send what waits now, full or not: the caller is about to wait for the results."""
        self._flushing = True
        for lane in self._lanes:
            if lane.waiting:
                lane.wake.set()

    async def deliver(self, items: Sequence[Forwarded]) -> DeliveryReport:
        if self._count == 1 or not items:
            return await self._deliverer.deliver(items)
        ticket = _Ticket(items, remaining=len(items))
        by_lane: list[list[int]] = [[] for _ in range(self._count)]
        count = self._count
        for index, item in enumerate(items):
            event = item.event
            user = event.get("user_id") or event.get("device_id")
            by_lane[hash(user) % count].append(index)
        self._flushing = False  # more is coming: let the lanes fill
        for lane, indexes in zip(self._lanes, by_lane, strict=True):
            if not indexes:
                continue
            for start in range(0, len(indexes), self._per_request):
                lane.waiting.append((ticket, indexes[start : start + self._per_request]))
            lane.size += len(indexes)
            if lane.size >= self._fill:
                lane.wake.set()
            if lane.task is None or lane.task.done():
                lane.task = asyncio.ensure_future(self._run(lane))
        try:
            return await asyncio.shield(ticket.done)
        except asyncio.CancelledError:
            # The caller stopped waiting (the worker is stopping): what has not left yet stays unsent; what is
            # on the wire completes and is not acknowledged (replayed after restart, one event by insert_id).
            for lane in self._lanes:
                lane.waiting = deque(entry for entry in lane.waiting if entry[0] is not ticket)
                lane.size = sum(len(indexes) for _, indexes in lane.waiting)
            raise

    async def _run(self, lane: _Lane) -> None:
        while True:
            while not lane.waiting or (lane.size < self._fill and not self._flushing):
                lane.wake.clear()
                await lane.wake.wait()
            taken: list[tuple[_Ticket, list[int]]] = []
            size = 0
            while lane.waiting and size < self._per_request:
                ticket, indexes = lane.waiting.popleft()
                room = self._per_request - size
                if len(indexes) > room:  # a full request: the rest of this entry leads the next one
                    lane.waiting.appendleft((ticket, indexes[room:]))
                    indexes = indexes[:room]
                taken.append((ticket, indexes))
                size += len(indexes)
            lane.size -= size
            combined = [ticket.items[index] for ticket, indexes in taken for index in indexes]
            try:
                report = await self._deliverer.deliver(combined)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # handed to every caller waiting on these events (FatalDeliveryError ...)
                for ticket, _ in taken:
                    if not ticket.done.done():
                        ticket.done.set_exception(exc)
                continue
            _distribute(report, taken)

    async def aclose(self) -> None:
        for lane in self._lanes:
            if lane.task is not None:
                lane.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task


def _distribute(report: DeliveryReport, taken: list[tuple[_Ticket, list[int]]]) -> None:
    """The combined request's report, back to each caller in its own indexes."""
    owner: list[tuple[_Ticket, int]] = [(ticket, index) for ticket, indexes in taken for index in indexes]
    for position in report.delivered:
        ticket, index = owner[position]
        ticket.report.delivered.append(index)
    for letter in report.dead:
        ticket, index = owner[letter.index]
        ticket.report.dead.append(DeadLetter(index, letter.reason, letter.status, letter.excerpt, letter.attempts))
    for position in report.deferred:
        ticket, index = owner[position]
        ticket.report.deferred.append(index)
        ticket.report.defer_s = max(ticket.report.defer_s, report.defer_s)
        if report.defer_reason != "throttled":
            ticket.report.defer_reason = report.defer_reason
    first = taken[0][0].report
    first.retries += report.retries  # per request: counted once, on the first caller it carried
    first.throttled += report.throttled
    for ticket, indexes in taken:
        ticket.settle(len(indexes))
