"""Apply the records of the cohorts topic to MoEngage, one at a time, and say which may be acknowledged.

Faust-free, so the whole policy is testable with a dict for the state and the local MoEngage service:

- a webhook change is applied as is (members whose state already matches, or holds a later change, are not
  sent again: a repeated delivery sends nothing);
- a snapshot is diffed against the state part by part (adds go out as parts arrive; members already in the state
  are marked as seen by the snapshot); at its last part, members in the state that no part marked are removed,
  provided every part was seen. Each record is acknowledged once its own work is durable, in offset order (faust
  commits past an unacknowledged record when later ones are acknowledged first, shared/spec/faust-delivery.md),
  so a worker that dies mid-snapshot goes on from the part after the last one it finished;
- the state changes only after MoEngage answered 2xx; a refused body (400/413/415) is dead-lettered with the
  answer and its members stay out of the state (the next snapshot tries them again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from forwarder.cohorts.members import webhook_members
from forwarder.cohorts.moengage import Answer
from forwarder.cohorts.records import Record, SnapshotPart, WebhookChange
from forwarder.cohorts.requests import Member, bodies, segment_name
from forwarder.cohorts.state import (
    CohortStatus,
    Plan,
    Store,
    load_status,
    meta_key,
    plan_change,
    plan_snapshot_end,
    plan_snapshot_part,
    record,
    snapshot_tag,
)
from forwarder.kafka.dead_letters import DeadLetterRecord, DeadLetterSink, SourceRef

log = logging.getLogger("forwarder.cohorts")

UNREADABLE = "unreadable_record"


class Sender(Protocol):
    async def send(self, body: bytes) -> Answer: ...


@dataclass
class Identity:
    anonymous_property: str = "moe_anonymous_id"
    anonymous_field: str = "moe_anonymous_id"


class CohortSyncer:
    def __init__(
        self,
        store: Store,
        sender: Sender,
        dead_letters: DeadLetterSink,
        *,
        segment_prefix: str = "[Amplitude] ",
        identity: Identity | None = None,
        on_status: Callable[[CohortStatus], None] | None = None,
        persist: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``persist``: makes the state's changes so far durable (the changelog); called after each answered
        request, so what waits in memory is one request's members."""
        self.store = store
        self._sender = sender
        self._dead_letters = dead_letters
        self._prefix = segment_prefix
        self._identity = identity or Identity()
        self._on_status = on_status
        self._persist = persist
        self._clock = clock
        self.statuses: dict[str, CohortStatus] = {}
        self._partition_of: dict[str, int] = {}

    def status(self, cohort_id: str) -> CohortStatus:
        if cohort_id not in self.statuses:
            self.statuses[cohort_id] = load_status(self.store, cohort_id)
        return self.statuses[cohort_id]

    async def unreadable(self, value: bytes, ref: SourceRef, reason: str) -> list[SourceRef]:
        await self._dead_letters.write([DeadLetterRecord(value, ref, UNREADABLE, detail=reason)])
        log.warning(
            "a cohorts record could not be read; dead-lettered",
            extra={"fields": {"partition": ref.partition, "offset": ref.offset, "reason": reason}},
        )
        return [ref]

    async def handle(self, item: Record, ref: SourceRef) -> list[SourceRef]:
        """The references that are final now (acknowledge them); raises ``MoEngageFatal`` to stop."""
        cohort_id = item.change.cohort_id if isinstance(item, WebhookChange) else item.cohort_id
        self._partition_of[cohort_id] = ref.partition
        if isinstance(item, WebhookChange):
            return await self._webhook(item, ref)
        return await self._snapshot_part(item, ref)

    def forget_partitions(self, partitions: set[int]) -> None:
        """After a rebalance took these partitions: their cohorts' statuses are the new owner's."""
        for cohort_id in [c for c, p in self._partition_of.items() if p in partitions]:
            self.statuses.pop(cohort_id, None)
            del self._partition_of[cohort_id]

    async def _webhook(self, item: WebhookChange, ref: SourceRef) -> list[SourceRef]:
        change = item.change
        status = self.status(change.cohort_id)
        status.name = change.cohort_name
        members, unmapped = webhook_members(change, self._identity.anonymous_property, self._identity.anonymous_field)
        if change.in_cohort:
            status.count_unmapped(item.time_ms, unmapped, change.message_id or None)
        plan = plan_change(self.store, change.cohort_id, members, change.in_cohort, item.time_ms)
        await self._apply(plan, status, ref, item.time_ms)
        self._finish(status, item.time_ms)
        return [ref]

    async def _snapshot_part(self, part: SnapshotPart, ref: SourceRef) -> list[SourceRef]:
        status = self.status(part.cohort_id)
        status.name = part.cohort_name
        if status.snapshot_id != part.snapshot_id:
            if status.snapshot_id and status.snapshot_parts:
                log.warning(
                    "a snapshot was left unfinished (its pull died?): its adds stand, it removed nothing",
                    extra={"fields": {"cohort_id": part.cohort_id, "snapshot_id": status.snapshot_id}},
                )
            status.snapshot_id, status.snapshot_parts = part.snapshot_id, []
        if part.part not in status.snapshot_parts:
            status.snapshot_parts.append(part.part)
        tag = snapshot_tag(part.snapshot_id)
        plan = plan_snapshot_part(self.store, part.cohort_id, part.members, part.computed_ms, tag)
        record(self.store, status, plan.confirmed, True, part.computed_ms, tag)
        await self._apply(plan, status, ref, part.computed_ms, tag)
        if not part.last:
            self._finish(status, None)
            return [ref]
        if sorted(status.snapshot_parts) == list(range(part.part + 1)):
            removals, expired = plan_snapshot_end(self.store, part.cohort_id, part.computed_ms, tag)
            await self._apply(removals, status, ref, part.computed_ms)
            for key in expired:
                del self.store[key]
        else:
            missing = sorted(set(range(part.part + 1)) - set(status.snapshot_parts))
            log.warning(
                "a snapshot ended without all its parts: members added, none removed",
                extra={"fields": {"cohort_id": part.cohort_id, "snapshot_id": part.snapshot_id, "missing": missing}},
            )
        status.snapshot_parts = []
        status.snapshot_members = part.total
        status.count_unmapped(part.computed_ms, part.unmapped, None)
        self._finish(status, part.computed_ms)
        return [ref]

    async def _apply(self, plan: Plan, status: CohortStatus, ref: SourceRef, time_ms: int, tag: str = "") -> None:
        status.stale_ignored += plan.stale
        name = segment_name(self._prefix, status.name or status.cohort_id)
        for action, members, present in (("add_members", plan.adds, True), ("remove_members", plan.removes, False)):
            if members:
                await self._send(action, name, members, present, status, ref, time_ms, tag if present else "")

    async def _send(
        self,
        action: str,
        name: str,
        members: Sequence[Member],
        present: bool,
        status: CohortStatus,
        ref: SourceRef,
        time_ms: int,
        tag: str,
    ) -> None:
        status.pending += len(members)
        start = answered = 0
        try:
            for body, count in bodies(action, status.cohort_id, name, members):
                chunk = members[start : start + count]
                start += count
                answer = await self._sender.send(body)
                status.pending -= count
                answered += count
                if answer.accepted:
                    record(self.store, status, chunk, present, time_ms, tag)
                    if self._persist is not None:
                        await self._persist()
                else:
                    status.dead_lettered += count
                    await self._dead_letters.write(
                        [
                            DeadLetterRecord(
                                body,
                                ref,
                                f"moengage_{answer.status}",
                                status=answer.status,
                                response_excerpt=answer.excerpt,
                                attempts=answer.attempts,
                                detail=f"{action} of {count} members of cohort {status.cohort_id}",
                            )
                        ]
                    )
                    log.warning(
                        "MoEngage refused a request; dead-lettered with its answer",
                        extra={"fields": {"cohort_id": status.cohort_id, "status": answer.status, "members": count}},
                    )
                if self._on_status is not None:
                    self._on_status(status)
        finally:
            status.pending -= len(members) - answered

    def _finish(self, status: CohortStatus, computed_ms: int | None) -> None:
        status.last_sync_ms = int(self._clock() * 1000)
        if computed_ms is not None:
            status.last_computed_ms = max(status.last_computed_ms, computed_ms)
        self.store[meta_key(status.cohort_id)] = status.encode()
        if self._on_status is not None:
            self._on_status(status)
