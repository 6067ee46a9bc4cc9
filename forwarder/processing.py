"""One batch of Kafka messages -> final outcomes. Knows nothing of faust, so replay tools reuse it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from forwarder.amplitude.delivery import DeliveryReport
from forwarder.core.counting import OutcomeCounter, outcome_key
from forwarder.core.outcomes import Forwarded, Invalid
from forwarder.core.pipeline import MappingRules, process_message
from forwarder.core.property_memory import PropertyMemory, Ticket
from forwarder.core.slot import slot_of
from forwarder.kafka.dead_letters import DeadLetterRecord, DeadLetterSink, SourceRef
from forwarder.ledger.records import LedgerRecord
from forwarder.worker.metrics import Metrics

log = logging.getLogger("forwarder.batch")


@dataclass(frozen=True, slots=True)
class SourceMessage:
    ref: SourceRef
    value: bytes
    # A message of the retry topic: where its event first came from (source ref, event index). It is parked
    # again under that name, and the ledger counts the event once however often it was parked.
    parked_from: tuple[SourceRef, int] | None = None


@dataclass
class BatchSummary:
    """What became of a batch: its outcomes (one ``OutcomeCounter``) and how delivery went."""

    messages: int = 0
    outcomes: OutcomeCounter = field(default_factory=OutcomeCounter)
    retries: int = 0
    throttled: int = 0
    # Parked in the retry topic: read, not final yet (counted when the retry pass settles them).
    deferred: int = 0

    @property
    def read(self) -> int:
        return self.outcomes.read + self.deferred

    @property
    def delivered(self) -> int:
        return self.outcomes.total("delivered")

    @property
    def filtered(self) -> Counter[str]:
        return self.outcomes.reasons("filtered")

    @property
    def dropped(self) -> Counter[str]:
        return self.outcomes.reasons("dropped")

    @property
    def dead_lettered(self) -> Counter[str]:
        return self.outcomes.reasons("dead_lettered")

    def add(self, other: BatchSummary) -> None:
        self.messages += other.messages
        self.outcomes.add(other.outcomes)
        self.retries += other.retries
        self.throttled += other.throttled
        self.deferred += other.deferred

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "read": self.read,
            "delivered": self.delivered,
            "filtered": dict(self.filtered),
            "dropped": dict(self.dropped),
            "dead_lettered": dict(self.dead_lettered),
            "deferred": self.deferred,
            "retries": self.retries,
        }


def _origin(parked_from: tuple[SourceRef, int] | None) -> str | None:
    if parked_from is None:
        return None
    ref, index = parked_from
    return f"{ref.topic}/{ref.partition}/{ref.offset}/{index}"


class Delivers(Protocol):
    """``Deliverer``, or ``Lanes`` around it: every event of ``items`` final (or deferred) in the report.
    ``flush``: the caller is about to wait, so nothing may wait for company any longer."""

    async def deliver(self, items: Sequence[Forwarded]) -> DeliveryReport: ...

    def flush(self) -> None: ...


class LedgerSink(Protocol):
    """Where each run's ledger records go: returns once they are stored, before the run is acknowledged."""

    async def write(self, records: list[LedgerRecord]) -> None: ...


@dataclass(slots=True)  # not frozen: one per forwarded event, and frozen __init__ costs a setattr per field
class _Pending:
    source: SourceRef
    index: int
    raw: Any
    outcome: Forwarded
    ledger: LedgerRecord
    hour: int
    campaign: str
    parked_from: tuple[SourceRef, int] | None = None
    # The user-property values it carries (FORWARDER_USER_PROPERTIES), remembered once Amplitude accepts them.
    ticket: Ticket | None = None


@dataclass
class Prepared:
    summary: BatchSummary
    pending: list[_Pending]
    dead: list[DeadLetterRecord]
    # One ledger record per (topic, partition) of the run: every event is counted in its source's record.
    slices: dict[tuple[str, int], LedgerRecord] = field(default_factory=dict)
    # (kind, event code) -> events; and the insert_ids of the run, to see one used twice.
    warnings: Counter[tuple[str, str]] = field(default_factory=Counter)
    insert_ids: set[str] = field(default_factory=set)
    repaired: int = 0
    # (property, action) -> events the PII rules changed.
    pii: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Some message came from the retry topic: its events are settled one by one, under their first source.
    parked: bool = False

    @property
    def outcomes(self) -> OutcomeCounter:
        """The run's outcomes so far, over all its slices."""
        total = OutcomeCounter()
        for record in self.slices.values():
            total.add(record.outcomes)
        return total

    @classmethod
    def empty(cls, messages: int) -> Prepared:
        return cls(BatchSummary(messages=messages), [], [])

    def slice_of(self, source: str, ref: SourceRef) -> LedgerRecord:
        record = self.slices.get((ref.topic, ref.partition))
        if record is None:
            record = self.slices[ref.topic, ref.partition] = LedgerRecord(
                source, ref.topic, ref.partition, ref.offset, ref.offset
            )
        elif ref.offset > record.last_offset:
            record.last_offset = ref.offset
        elif ref.offset < record.first_offset:
            record.first_offset = ref.offset
        return record


class BatchProcessor:
    def __init__(
        self,
        rules: MappingRules,
        deliverer: Delivers,
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        retries: DeadLetterSink | None = None,
        ledger: LedgerSink | None = None,
        source: str = "stream",
        memory: PropertyMemory | None = None,
    ) -> None:
        """``retries``: where throttled events wait (the retry topic) when the deliverer defers them.
        ``ledger``: where each run's outcomes are recorded, labelled ``source`` (None: a dry run, or no Kafka).
        ``memory``: the user-property values already sent, per user (with FORWARDER_USER_PROPERTIES)."""
        self.rules = rules
        self._deliverer = deliverer
        self._dead_letters = dead_letters
        self._retries = retries
        self._metrics = metrics
        self._ledger = ledger
        self.source = source
        self.memory = memory

    async def process(self, messages: Sequence[SourceMessage]) -> BatchSummary:
        """Returns once every event of ``messages`` has a final outcome (dead letters stored).

        Raises ``FatalDeliveryError`` (or is cancelled when the worker stops); then nothing of the batch may
        be acknowledged.
        """
        finishing = asyncio.ensure_future(self.finish(self.prepare(messages)))
        try:
            await asyncio.sleep(0)  # it hands its events to the delivery lanes ...
            self.flush()  # ... which send them now: nothing else is coming
            return await finishing
        finally:
            if not finishing.done():
                finishing.cancel()

    def flush(self) -> None:
        self._deliverer.flush()

    def prepare(self, messages: Sequence[SourceMessage]) -> Prepared:
        """The CPU half: decode and map, no I/O."""
        prepared = Prepared.empty(len(messages))
        self._prepare_into(prepared, messages)
        return prepared

    async def prepare_yielding(self, messages: Sequence[SourceMessage], slice_bytes: int = 64 * 1024) -> Prepared:
        """``prepare``, handing the event loop back after every ``slice_bytes`` of input.

        The worker maps the next run while this one's POST is out; mapping a 1 MB run holds the loop for tens
        of milliseconds, and without these pauses the request is not written, nor its answer read, until it ends.
        """
        prepared = Prepared.empty(len(messages))
        start = size = 0
        for end, message in enumerate(messages, 1):
            size += len(message.value)
            if size >= slice_bytes:
                self._prepare_into(prepared, messages[start:end])
                start, size = end, 0
                await asyncio.sleep(0)
        self._prepare_into(prepared, messages[start:])
        return prepared

    def _prepare_into(self, prepared: Prepared, messages: Sequence[SourceMessage]) -> None:
        pending, dead = prepared.pending, prepared.dead
        rules, source = self.rules, self.source
        warnings, insert_ids = prepared.warnings, prepared.insert_ids
        for message in messages:
            if message.parked_from is not None:
                prepared.parked = True
            ledger = prepared.slice_of(source, message.ref)
            outcomes = ledger.outcomes
            result = process_message(message.value, rules)
            if result.repaired:
                prepared.repaired += len(result.outcomes)
                log.warning(
                    "repaired input: bytes that are not UTF-8 were replaced with U+FFFD and the events kept",
                    extra={
                        "fields": {
                            "moe_request_id": result.request_id,
                            "events": len(result.outcomes),
                            "source": f"{message.ref.topic}/{message.ref.partition}@{message.ref.offset}",
                        }
                    },
                )
            if result.error is not None:
                dead.append(
                    DeadLetterRecord(message.value, message.ref, result.error.reason, detail=result.error.detail)
                )
                outcomes.count(result.outcomes[0])  # no event to file it under: NO_SLOT
                continue
            events = result.events
            for index, outcome in enumerate(result.outcomes):
                if isinstance(outcome, Forwarded):
                    raw = events[index]
                    hour, campaign = slot_of(raw, outcome.event["time"])
                    pending.append(
                        _Pending(message.ref, index, raw, outcome, ledger, hour, campaign, message.parked_from)
                    )
                    for warning in outcome.warnings:
                        warnings[warning.kind, outcome.code] += 1
                    for applied in outcome.pii:
                        prepared.pii[applied] += 1
                    insert_id = outcome.event["insert_id"]
                    if insert_id in insert_ids:
                        warnings["duplicate_insert_id", outcome.code] += 1
                    else:
                        insert_ids.add(insert_id)
                    continue
                hour, campaign = slot_of(events[index])
                ledger.settle(outcome_key(outcome, hour, campaign), _origin(message.parked_from))
                if isinstance(outcome, Invalid):
                    dead.append(
                        DeadLetterRecord(
                            orjson.dumps(result.events[index], default=str),
                            message.ref,
                            outcome.reason,
                            event_index=index,
                            event_code=outcome.code,
                            detail=outcome.detail,
                        )
                    )

    async def finish(self, prepared: Prepared) -> BatchSummary:
        """The I/O half: deliver, store dead letters and parked events, count. Raises as ``process`` does."""
        summary = prepared.summary
        memory = self.memory
        if memory is not None:
            # Here, not while mapping: a prepared run the ack loop drops (its partition revoked) never sends its
            # values, and nothing before the first await runs out of the order the runs were prepared in.
            for item in prepared.pending:
                item.ticket = memory.offer(item.outcome)
        try:
            report = await self._deliverer.deliver([p.outcome for p in prepared.pending])
        except BaseException:
            self._settle_memory(prepared, None)  # the run is read again: its values must be sent again
            raise
        self._settle_memory(prepared, report)
        parked, dead = triage(prepared, report, not_before_ms=int((time.time() + report.defer_s) * 1000))
        summary.retries = report.retries
        summary.throttled = report.throttled
        summary.deferred = len(parked)
        if parked:
            if self._retries is None:
                raise RuntimeError("the deliverer deferred events but there is no retry topic")
            await self._retries.write(parked)
        await self._dead_letters.write(dead)
        for record in prepared.slices.values():
            summary.outcomes.add(record.outcomes)
        if self._ledger is not None and prepared.slices:
            written_at_ms = int(time.time() * 1000)
            for record in prepared.slices.values():
                record.written_at_ms = written_at_ms
            await self._ledger.write(list(prepared.slices.values()))
        self._count(prepared, report, len(dead))
        log.info("batch", extra={"fields": summary.as_dict()})
        return summary

    def _settle_memory(self, prepared: Prepared, report: DeliveryReport | None) -> None:
        """What Amplitude accepted stays remembered; the rest is forgotten (``report`` None: the run failed)."""
        memory = self.memory
        if memory is None:
            return
        accepted = set(report.delivered) if report is not None else set()
        for position, item in enumerate(prepared.pending):
            if item.ticket is not None:
                memory.settle(item.ticket, position in accepted)

    def _count(self, prepared: Prepared, report: DeliveryReport, dead_letters: int) -> None:
        metrics = self._metrics
        metrics.add_outcomes(prepared.summary.outcomes)
        for (kind, code), count in prepared.warnings.items():
            metrics.event_warnings.labels(kind, code).inc(count)
        if prepared.repaired:
            metrics.events_repaired.labels("invalid_utf8").inc(prepared.repaired)
        for (name, action), count in prepared.pii.items():
            metrics.pii.labels(name, action).inc(count)
        metrics.messages.inc(prepared.summary.messages)
        metrics.dead_letters.inc(dead_letters)
        metrics.retries.inc(report.retries)
        metrics.throttled.inc(report.throttled)
        if prepared.pending:
            metrics.batch_events.observe(len(prepared.pending))
        if report.delivered:
            metrics.delivered_now()


def triage(
    prepared: Prepared, report: DeliveryReport, not_before_ms: int
) -> tuple[list[DeadLetterRecord], list[DeadLetterRecord]]:
    """Pure: each pending event's final outcome settled in its ledger slice, and the records to store: events
    parked on the retry topic (deferred by a 429) and the batch's dead letters (``prepared.dead`` plus Amplitude's
    refusals)."""
    pending, dead = prepared.pending, prepared.dead
    rejected = {d.index: d for d in report.dead}
    deferred = set(report.deferred)
    parked: list[DeadLetterRecord] = []
    if not rejected and not deferred and not prepared.parked:
        # The common case, every event delivered: count them by slot without a call per event.
        groups = Counter(
            (item.ledger, item.outcome.code, item.outcome.event["event_type"], item.hour, item.campaign)
            for item in pending
        )
        for (ledger, code, event_type, hour, campaign), count in groups.items():
            ledger.outcomes.delivered(code, count, hour, campaign)
            ledger.event_types.setdefault(code, event_type)
        return parked, dead
    for position, item in enumerate(pending):
        ledger, origin = item.ledger, _origin(item.parked_from)
        if position in deferred:
            ledger.deferred += 1
            # Not final yet: the outcome is counted when the retry topic's pass settles it.
            source, index = item.parked_from or (item.source, item.index)
            parked.append(
                DeadLetterRecord(
                    orjson.dumps(item.raw, default=str),
                    source,
                    "throttled",
                    event_index=index,
                    event_code=item.outcome.code,
                    status=429,
                    not_before_ms=not_before_ms,
                )
            )
            continue
        letter = rejected.get(position)
        if letter is None:
            ledger.settle(("delivered", "", item.outcome.code, item.hour, item.campaign), origin)
            ledger.event_types.setdefault(item.outcome.code, item.outcome.event["event_type"])
            continue
        ledger.settle(("dead_lettered", letter.reason, item.outcome.code, item.hour, item.campaign), origin)
        dead.append(
            DeadLetterRecord(
                orjson.dumps(item.raw, default=str),
                item.source,
                letter.reason,
                event_index=item.index,
                event_code=item.outcome.code,
                status=letter.status,
                response_excerpt=letter.excerpt,
                attempts=letter.attempts,
            )
        )
    return parked, dead
