"""Delivery policy: keep sending until every event has a final outcome, or give up only when told to stop.

Final outcomes are ``delivered`` and ``dead-lettered`` (rejected for good, with Amplitude's reason).
Transient failures are retried with exponential backoff and full jitter, without end: an outage pauses
delivery, it never drops. An invalid API key is fatal configuration and raises.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from forwarder.amplitude.client import (
    Accepted,
    AmplitudeClient,
    BadRequest,
    InvalidKey,
    Rejected,
    Throttled,
    TooLarge,
    Unavailable,
)
from forwarder.amplitude.encoding import chunk_indexes
from forwarder.amplitude.limits import ApiLimits
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
    # Throttled events handed back to the caller (``defer_throttled``) and how long they should wait.
    deferred: list[int] = field(default_factory=list)
    defer_s: float = 0.0


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
        client: AmplitudeClient,
        limits: ApiLimits,
        wait: Wait,
        backoff: Backoff = Backoff(),
        defer_throttled: bool = False,
    ) -> None:
        """``defer_throttled``: hand throttled events back in the report instead of waiting for them, so the
        caller can park them (the worker's retry topic) and other users' events are not held back.
        """
        self._client = client
        self._limits = limits
        self._wait = wait
        self._backoff = backoff
        self._defer_throttled = defer_throttled

    def flush(self) -> None:
        """Nothing waits here: each ``deliver`` sends at once (``Lanes`` batches across calls)."""

    async def deliver(self, items: Sequence[Forwarded]) -> DeliveryReport:
        """Indexes in the report refer to ``items``."""
        report = DeliveryReport()
        if not items:
            return report
        events = [item.event for item in items]
        encoded = [item.encoded for item in items]
        sizes = [len(b) for b in encoded]
        attempts = [0] * len(events)
        queue: deque[list[int]] = deque(
            chunk_indexes(sizes, range(len(events)), self._limits, self._client.body_overhead)
        )
        failures = 0

        def dead(index: int, reason: str, status: int | None, excerpt: str) -> None:
            report.dead.append(DeadLetter(index, reason, status, excerpt, attempts[index]))

        while queue:
            run = queue.popleft()
            for index in run:
                attempts[index] += 1
            result = await self._client.send([encoded[i] for i in run])
            if isinstance(result, Accepted):
                report.delivered.extend(run)
                failures = 0
            elif isinstance(result, Rejected):
                for position, reason in result.reasons.items():
                    dead(run[position], reason, result.status, result.excerpt)
                rest = [index for position, index in enumerate(run) if position not in result.reasons]
                if rest:
                    queue.appendleft(rest)
            elif isinstance(result, BadRequest | TooLarge):
                if len(run) > 1:
                    # Halve until the culprit stands alone; the others go through.
                    middle = len(run) // 2
                    queue.appendleft(run[middle:])
                    queue.appendleft(run[:middle])
                else:
                    reason = "too_large" if isinstance(result, TooLarge) else "bad_request"
                    dead(run[0], reason, result.status, getattr(result, "excerpt", ""))
            elif isinstance(result, InvalidKey):
                raise FatalDeliveryError(f"Amplitude refused the API key (HTTP {result.status})")
            elif isinstance(result, Throttled):
                waiting = []
                retry_now = []
                for position, index in enumerate(run):
                    event = events[index]
                    if event.get("user_id") in result.quota_users or event.get("device_id") in result.quota_devices:
                        dead(index, "daily_quota_exceeded", result.status, result.excerpt)
                    elif position in result.throttled:
                        waiting.append(index)
                    else:
                        retry_now.append(index)
                report.throttled += len(waiting)
                if retry_now:
                    queue.appendleft(retry_now)
                if waiting and self._defer_throttled:
                    report.deferred.extend(waiting)
                    report.defer_s = max(report.defer_s, result.pause_s)
                elif waiting:
                    await self._wait(result.pause_s)
                    queue.append(waiting)
            elif isinstance(result, Unavailable):
                failures += 1
                report.retries += 1
                queue.appendleft(run)
                await self._wait(self._backoff.delay(failures))
        return report
