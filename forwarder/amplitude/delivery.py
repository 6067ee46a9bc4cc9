"""Delivery policy: keep sending until every event has a final outcome, or give up only when told to stop.

Final outcomes are ``delivered`` and ``dead-lettered`` (rejected for good, with Amplitude's reason).
Transient failures are retried with exponential backoff and full jitter, without end: an outage pauses
delivery, it never drops. An invalid API key is fatal configuration and raises.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import assert_never

from forwarder.amplitude import client as amplitude
from forwarder.amplitude.client import Accepted, BadRequest, InvalidKey, Rejected, Throttled, TooLarge, Unavailable
from forwarder.amplitude.encoding import chunk_indexes
from forwarder.amplitude.limits import ApiLimits
from forwarder.amplitude.route_health import RouteHealth
from forwarder.core.outcomes import Forwarded


class FatalDeliveryError(Exception):
    """Configuration Amplitude refuses (invalid API key): stop consuming, commit nothing past it."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    index: int
    reason: str
    status: int | None
    excerpt: str
    attempts: int


@dataclass
class DeliveryReport:
    delivered: list[int] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    retries: int = 0
    throttled: int = 0
    # Throttled events handed back to the caller (``defer_throttled``) and how long they should wait; or, with
    # ``defer_reason`` ``route_parked``, the events of a route whose project keeps failing (``RouteHealth``).
    deferred: list[int] = field(default_factory=list)
    defer_s: float = 0.0
    defer_reason: str = "throttled"


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, failures: int) -> float:
        # Full jitter (AWS architecture blog): spreads a fleet's retries after a shared outage.
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** min(failures, 16)))


# Sleeps between attempts; the worker stops by cancelling it, leaving the batch unacked (replayed later).
Wait = Callable[[float], Awaitable[object]]


class Deliverer:
    def __init__(
        self,
        client: amplitude.AmplitudeClient,
        limits: ApiLimits,
        wait: Wait,
        backoff: Backoff = Backoff(),
        defer_throttled: bool = False,
        health: RouteHealth | None = None,
        park: bool = False,
    ) -> None:
        """``defer_throttled``: hand throttled events back in the report instead of waiting for them, so the
        caller can park them (the worker's retry topic) and other users' events are not held back.
        ``health``: the route's (with a routes file): a refused key is then one more failure of that project, not
        fatal to the worker. ``park``: hand the events back once the route is to be parked (the source agent).
        """
        self._client = client
        self._limits = limits
        self._wait = wait
        self._backoff = backoff
        self._defer_throttled = defer_throttled
        self._health = health
        self._park = park and health is not None

    def flush(self) -> None:
        """Nothing waits here: each ``deliver`` sends at once (``Lanes`` batches across calls)."""

    async def deliver(self, items: Sequence[Forwarded]) -> DeliveryReport:
        """Indexes in the report refer to ``items``."""
        if not items:
            return DeliveryReport()
        work = _Work(
            items,
            chunk_indexes([len(i.encoded) for i in items], range(len(items)), self._limits, self._client.body_overhead),
        )
        health = self._health
        while work.queue:
            run = work.take()
            result = await self._client.send([items[i].encoded for i in run])
            if health is not None:
                if isinstance(result, Unavailable | InvalidKey):
                    health.failed()
                else:
                    health.answered()
            match result:
                case Accepted():
                    work.report.delivered.extend(run)
                    work.failures = 0
                case Rejected():
                    work.rejected(run, result)
                case BadRequest() | TooLarge():
                    work.split(run, result)
                case InvalidKey() if health is None:
                    raise FatalDeliveryError(f"Amplitude refused the API key (HTTP {result.status})")
                case Throttled():
                    waiting = work.throttled(run, result)
                    if waiting and self._defer_throttled:
                        work.report.deferred.extend(waiting)
                        work.report.defer_s = max(work.report.defer_s, result.pause_s)
                    elif waiting:
                        await self._wait(result.pause_s)
                        work.queue.append(waiting)
                case Unavailable() | InvalidKey():  # with a route's health: one more failure of its project
                    work.failures += 1
                    work.report.retries += 1
                    work.queue.appendleft(run)
                    if self._park and health is not None and health.should_park():
                        health.park()
                        work.park_the_rest(health.delay_s())
                        break
                    await self._wait(self._backoff.delay(work.failures))
                case _:
                    assert_never(result)
        return work.report


class _Work:
    """One ``deliver`` call's state: the runs still to send, each event's attempts, the report so far."""

    def __init__(self, items: Sequence[Forwarded], runs: Iterable[list[int]]) -> None:
        self.report = DeliveryReport()
        self.items = items
        self.attempts = [0] * len(items)
        self.queue: deque[list[int]] = deque(runs)
        self.failures = 0

    def park_the_rest(self, delay_s: float) -> None:
        """Every event not final yet goes back to the caller, to wait on the retry topic."""
        while self.queue:
            self.report.deferred.extend(self.queue.popleft())
        self.report.defer_s = max(self.report.defer_s, delay_s)
        self.report.defer_reason = "route_parked"

    def take(self) -> list[int]:
        run = self.queue.popleft()
        for index in run:
            self.attempts[index] += 1
        return run

    def dead(self, index: int, reason: str, status: int | None, excerpt: str) -> None:
        self.report.dead.append(DeadLetter(index, reason, status, excerpt, self.attempts[index]))

    def rejected(self, run: list[int], result: Rejected) -> None:
        """400 naming events: those are dead letters with Amplitude's reason, the rest are sent again."""
        for position, reason in result.reasons.items():
            self.dead(run[position], reason, result.status, result.excerpt)
        rest = [index for position, index in enumerate(run) if position not in result.reasons]
        if rest:
            self.queue.appendleft(rest)

    def split(self, run: list[int], result: BadRequest | TooLarge) -> None:
        """Halve until the culprit stands alone; the others go through."""
        if len(run) > 1:
            middle = len(run) // 2
            self.queue.appendleft(run[middle:])
            self.queue.appendleft(run[:middle])
            return
        reason = "too_large" if isinstance(result, TooLarge) else "bad_request"
        self.dead(run[0], reason, result.status, result.excerpt)

    def throttled(self, run: list[int], result: Throttled) -> list[int]:
        """Over the daily quota: dead letters. Throttled: returned, to wait. The rest: sent again now."""
        waiting, retry_now = [], []
        for position, index in enumerate(run):
            event = self.items[index].event
            if event.get("user_id") in result.quota_users or event.get("device_id") in result.quota_devices:
                self.dead(index, "daily_quota_exceeded", result.status, result.excerpt)
            elif position in result.throttled:
                waiting.append(index)
            else:
                retry_now.append(index)
        self.report.throttled += len(waiting)
        if retry_now:
            self.queue.appendleft(retry_now)
        return waiting
