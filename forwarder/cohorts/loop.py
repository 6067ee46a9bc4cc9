"""The cohort agent's loop, one record at a time: admitted in offset order, synced, its state made durable, then
acknowledged. Kept apart from faust so its order can be tested without a broker (``tests/cohorts/test_loop.py``).

A record is acknowledged only once MoEngage answered for all its members and its state changes are in the
changelog; the syncer says which records are done (``final``), which may include earlier ones it held. A refused
key parks the loop: nothing more is acknowledged, and after the restart the record is read again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from forwarder.cohorts.members import PayloadError
from forwarder.cohorts.moengage import MoEngageFatal
from forwarder.cohorts.records import Record, decode
from forwarder.health import Health
from forwarder.kafka.dead_letters import SourceRef
from forwarder.kafka.order import Verdict
from forwarder.kafka.progress import Progress

log = logging.getLogger("forwarder.cohorts")


class Admits(Protocol):
    async def admit(self, topic: str, partition: int, offset: int) -> Verdict: ...


class Syncs(Protocol):
    async def handle(self, item: Record, ref: SourceRef) -> list[SourceRef]: ...
    async def unreadable(self, value: bytes, ref: SourceRef, reason: str) -> list[SourceRef]: ...
    def forget_partitions(self, partitions: set[int]) -> None: ...


class Stores(Protocol):
    partition: int

    async def flush(self) -> None: ...


class Publishes(Protocol):
    async def flush(self, force: bool = False) -> None: ...


async def park_forever() -> None:
    """Taken but not acknowledged: after the restart (with the setting fixed) it is read again."""
    await asyncio.Event().wait()


class CohortLoop:
    def __init__(
        self,
        guard: Admits,
        syncer: Syncs,
        store: Stores,
        publisher: Publishes,
        acknowledge: Callable[[list[Any]], None],
        health: Health,
        park: Callable[[], Awaitable[None]] = park_forever,
        progress: Progress | None = None,
    ) -> None:
        """``progress``: what was taken and what is being worked on, per partition (the stall watch reads it)."""
        self._guard = guard
        self._syncer = syncer
        self._store = store
        self._publisher = publisher
        self._acknowledge = acknowledge
        self._health = health
        self._park = park
        self._progress = progress or Progress(float("inf"))
        # Taken, not yet acknowledged: (partition, offset) -> the faust event to acknowledge.
        self.held: dict[tuple[int, int], Any] = {}

    async def take(self, event: Any) -> None:
        message = event.message
        self._progress.taken(message.topic, [(message.partition, message.timestamp)])
        if await self._guard.admit(message.topic, message.partition, message.offset) is not Verdict.PROCESS:
            return  # a copy of a record admitted before, or a record ahead of a hole being read again
        ref = SourceRef(message.topic, message.partition, message.offset, message.key)
        self.held[(message.partition, message.offset)] = event
        self._store.partition = message.partition
        with self._progress.working(message.topic, [message.partition]):
            final = await self._sync(message, ref)
            await self._store.flush()  # the state's changes are durable before anything is acknowledged
            self._ack(final)
            await self._publisher.flush(force=True)
        self._progress.finished(message.topic)

    async def _sync(self, message: Any, ref: SourceRef) -> list[SourceRef]:
        # faust gives the record's time in seconds; a change without its own time is stamped with it, in ms.
        received_ms = int((message.timestamp or 0) * 1000)
        try:
            record = decode(message.value or b"", list(message.headers or []), received_ms)
        except PayloadError as exc:
            return await self._syncer.unreadable(message.value or b"", ref, str(exc))
        try:
            return await self._syncer.handle(record, ref)
        except MoEngageFatal as exc:
            self._health.fatal = str(exc)
            log.error(
                "cohort sync stopped: MoEngage refused the credentials; nothing past this record is committed; "
                "fix the setting and restart",
                extra={"fields": {"error": str(exc), "first_unacked": f"{message.partition}@{message.offset}"}},
            )
            await self._publisher.flush(force=True)
            await self._park()
            return []

    def _ack(self, refs: list[SourceRef]) -> None:
        for ref in refs:
            event = self.held.pop((ref.partition, ref.offset), None)
            if event is not None:
                self._acknowledge([event])

    def revoked(self, partitions: set[int]) -> None:
        """What was taken but not acknowledged is read again from the committed offset by whoever owns the
        partition after the rebalance (this worker too): never acknowledge the old copy."""
        for key in [k for k in self.held if k[0] in partitions]:
            del self.held[key]
        self._syncer.forget_partitions(partitions)
