"""One batch of Kafka messages -> final outcomes. Knows nothing of faust, so replay tools reuse it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

import orjson

from forwarder.amplitude.delivery import DeliveryReport
from forwarder.amplitude.route_health import RouteHealth
from forwarder.core.counting import DEFAULT_ROUTE, OutcomeCounter, outcome_key
from forwarder.core.decode import Decoded, DecodeError, decode_message
from forwarder.core.keys import partition_key
from forwarder.core.outcomes import Filtered, Forwarded, Invalid
from forwarder.core.pipeline import MappingRules, MessageResult, process_decoded
from forwarder.core.property_memory import PropertyMemory, Ticket
from forwarder.core.slot import slot_of
from forwarder.kafka.dead_letters import ROUTE_HEADER, DeadLetterRecord, DeadLetterSink, SourceRef
from forwarder.ledger.records import LedgerRecord
from forwarder.routes import RouteTable
from forwarder.worker.metrics import Metrics

log = logging.getLogger("forwarder.batch")


@dataclass(frozen=True, slots=True)
class SourceMessage:
    ref: SourceRef
    value: bytes
    # A message of the retry topic: where its event first came from (source ref, event index). It is parked
    # again under that name, and the ledger counts the event once however often it was parked.
    parked_from: tuple[SourceRef, int] | None = None
    # The route its ``forwarder.route`` header names (ingest's ``FORWARDER_INGEST_PATH/{route}``, a parked event).
    route: str | None = None


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
        reasons = self.outcomes.reasons_of(("filtered", "dropped", "dead_lettered"))
        return {
            "messages": self.messages,
            "read": self.read,
            "delivered": self.delivered,
            **{outcome: dict(by_reason) for outcome, by_reason in reasons.items()},
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


@dataclass
class RouteStack:
    """One route's way to its Amplitude project: its rules, its lanes, its user-property memory, its health."""

    name: str
    rules: MappingRules
    deliverer: Delivers
    memory: PropertyMemory | None = None
    health: RouteHealth | None = None


@dataclass
class Routing:
    """Which route each message takes, and each route's stack. ``park``: a parked route's events go to the retry
    topic without being tried (the source agent; the retry agent tries them in place)."""

    table: RouteTable | None
    stacks: dict[str, RouteStack]
    park: bool = False

    def choose(self, header_route: str | None, app_name: str | None) -> RouteStack | tuple[str, str]:
        """The route's stack, or (why not: ``no_route`` / ``other_route``, the route to count it under)."""
        if self.table is None:
            return self.stacks[DEFAULT_ROUTE]
        route = self.table.choose(header_route, app_name)
        return route if isinstance(route, tuple) else self.stacks[route.name]


@dataclass(slots=True)  # not frozen: one per forwarded event, and frozen __init__ costs a setattr per field
class _Pending:
    """An event on its way to Amplitude. It holds its message's bytes, not the parsed event: the rare event that is
    parked or refused is decoded again (``raw_event``), and a run in flight weighs ~1 KB per event, not ~7 KB."""

    source: SourceRef
    index: int
    value: bytes
    outcome: Forwarded
    ledger: LedgerRecord
    hour: int
    campaign: str
    route: RouteStack
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
        routing: Routing | None = None,
    ) -> None:
        """``retries``: where throttled events wait (the retry topic) when the deliverer defers them.
        ``ledger``: where each run's outcomes are recorded, labelled ``source`` (None: a dry run, or no Kafka).
        ``memory``: the user-property values already sent, per user (with FORWARDER_USER_PROPERTIES).
        ``routing``: several routes (``FORWARDER_ROUTES_FILE``); None: one, ``default``, of ``rules`` and
        ``deliverer``."""
        self.rules = rules
        self._dead_letters = dead_letters
        self._retries = retries
        self._metrics = metrics
        self._ledger = ledger
        self.source = source
        self.routing = routing or Routing(None, {DEFAULT_ROUTE: RouteStack(DEFAULT_ROUTE, rules, deliverer, memory)})
        # The caller is waiting (``flush``) since the last run began: routes that hand in their events later must
        # not wait for company either.
        self._flushed = False
        # Done once the latest run so far has stored what it parked (or found it had nothing to park).
        self._parking_turn: asyncio.Future[None] | None = None

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
        self._flushed = True
        for stack in self.routing.stacks.values():
            stack.deliverer.flush()

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
        dead, source, routing = prepared.dead, self.source, self.routing
        max_bytes = self.rules.max_message_bytes
        for message in messages:
            if message.parked_from is not None:
                prepared.parked = True
            ledger = prepared.slice_of(source, message.ref)
            decoded = decode_message(message.value, max_bytes)
            if isinstance(decoded, DecodeError):
                dead.append(
                    DeadLetterRecord(
                        message.value, message.ref, decoded.reason, detail=decoded.detail, route=message.route
                    )
                )
                # No event to file it under: NO_SLOT.
                ledger.outcomes.count(Invalid(None, decoded.reason), route=message.route or DEFAULT_ROUTE)
                continue
            choice = routing.choose(message.route, decoded.app_name)
            if isinstance(choice, tuple):
                self._unrouted(prepared, message, decoded, *choice)
                continue
            result = process_decoded(decoded, choice.rules)
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
            self._file(prepared, message, result, ledger, choice)

    def _file(
        self, prepared: Prepared, message: SourceMessage, result: MessageResult, ledger: LedgerRecord, route: RouteStack
    ) -> None:
        """Each event of a routed message: pending delivery, or settled (filtered, dropped, dead-lettered)."""
        pending, dead = prepared.pending, prepared.dead
        warnings, insert_ids = prepared.warnings, prepared.insert_ids
        events = result.events
        for index, outcome in enumerate(result.outcomes):
            if isinstance(outcome, Forwarded):
                event = outcome.event
                hour, campaign = slot_of(events[index], event["time"])
                pending.append(
                    _Pending(
                        message.ref, index, message.value, outcome, ledger, hour, campaign, route, message.parked_from
                    )
                )
                for warning in outcome.warnings:
                    warnings[warning.kind, outcome.code] += 1
                for applied in outcome.pii:
                    prepared.pii[applied] += 1
                insert_id = event["insert_id"]
                if insert_id in insert_ids:
                    warnings["duplicate_insert_id", outcome.code] += 1
                else:
                    insert_ids.add(insert_id)
                if route.memory is None:
                    # Sent as ``encoded``: what delivery still reads of the event is its identity and type.
                    del cast(dict[str, Any], event)["event_properties"]
                continue
            hour, campaign = slot_of(events[index])
            ledger.settle(outcome_key(outcome, hour, campaign, route.name), _origin(message.parked_from))
            if isinstance(outcome, Invalid):
                dead.append(
                    DeadLetterRecord(
                        orjson.dumps(events[index], default=str),
                        message.ref,
                        outcome.reason,
                        event_index=index,
                        event_code=outcome.code,
                        detail=outcome.detail,
                        route=route.name,
                    )
                )

    def _unrouted(self, prepared: Prepared, message: SourceMessage, decoded: Decoded, why: str, route: str) -> None:
        """A message no route takes (dead-lettered whole, ``no_route``: replayable once a route takes it), or one
        of another route than a replay's ``--route`` (filtered)."""
        ledger = prepared.slice_of(self.source, message.ref)
        origin = _origin(message.parked_from)
        for event in decoded.events:
            code = event.get("event_code") if isinstance(event, dict) else None
            code = code if isinstance(code, str) else ""
            outcome = Filtered(code, why) if why == "other_route" else Invalid(code, why)
            hour, campaign = slot_of(event)
            ledger.settle(outcome_key(outcome, hour, campaign, route), origin)
        if why == "no_route":
            detail = f"app_name {decoded.app_name!r}: no route takes it, and no route is the default"
            if message.route is not None:
                detail = f"route {message.route!r} (the record's {ROUTE_HEADER} header) is not in the routes file"
            prepared.dead.append(DeadLetterRecord(message.value, message.ref, why, detail=detail, route=message.route))

    async def finish(self, prepared: Prepared) -> BatchSummary:
        """The I/O half: deliver, store dead letters and parked events, count. Raises as ``process`` does."""
        summary = prepared.summary
        groups = self._offer(prepared)  # before any await: in the order the runs were prepared
        # Runs park their events on the retry topic in the order they were prepared, whatever order their deliveries
        # end in: one user's parked events then keep their order there.
        earlier, self._parking_turn = self._parking_turn, asyncio.get_running_loop().create_future()
        mine, parking = self._parking_turn, list[RouteHealth]()
        try:
            try:
                report, due = await self._deliver(prepared, groups, parking)
            except BaseException:
                self._settle_memory(prepared, None)  # the run is read again: its values must be sent again
                raise
            self._settle_memory(prepared, report)
            parked, dead = triage(prepared, report, due)
            if earlier is not None:
                await asyncio.shield(earlier)
            if parked:
                if self._retries is None:
                    raise RuntimeError("the deliverer deferred events but there is no retry topic")
                await self._retries.write(parked)
        finally:
            mine.set_result(None)
            for health in parking:
                health.written()
        summary.retries = report.retries
        summary.throttled = report.throttled
        summary.deferred = len(parked)
        await self._dead_letters.write(dead)
        for record in prepared.slices.values():
            summary.outcomes.add(record.outcomes)
        if self._ledger is not None and prepared.slices:
            written_at_ms = int(time.time() * 1000)
            for record in prepared.slices.values():
                record.written_at_ms = written_at_ms
            await self._ledger.write(list(prepared.slices.values()))
        self._count(prepared, report, len(dead))
        if log.isEnabledFor(logging.INFO):
            log.info("batch", extra={"fields": summary.as_dict()})
        return summary

    def _offer(self, prepared: Prepared) -> dict[str, list[int]]:
        """The run's positions by route (with one route, none are listed); each event's user-property values offered
        to its route's memory. Here,
        not while mapping: a prepared run the ack loop drops (its partition revoked) never sends its values."""
        stacks = self.routing.stacks
        if len(stacks) == 1:  # one route: its events need no grouping (``_deliver`` takes them all)
            (stack,) = stacks.values()
            if stack.memory is not None:
                for item in prepared.pending:
                    item.ticket = stack.memory.offer(item.outcome)
            return {stack.name: []} if prepared.pending else {}
        groups: dict[str, list[int]] = {}
        for position, item in enumerate(prepared.pending):
            groups.setdefault(item.route.name, []).append(position)
            memory = item.route.memory
            if memory is not None:
                item.ticket = memory.offer(item.outcome)
        return groups

    async def _deliver(
        self, prepared: Prepared, groups: dict[str, list[int]], parking: list[RouteHealth]
    ) -> tuple[DeliveryReport, dict[int, tuple[str, float]]]:
        """Each route's events to its project at once; one report in the run's positions, and for each deferred
        position why and for how long. ``parking``: the routes whose events this run parks (until written)."""
        pending, stacks = prepared.pending, self.routing.stacks
        if len(groups) <= 1:  # the common case: one route
            name = next(iter(groups), DEFAULT_ROUTE)
            report = await self._deliver_route(stacks[name], [item.outcome for item in pending], parking)
            return report, {position: (report.defer_reason, report.defer_s) for position in report.deferred}
        names = list(groups)
        self._flushed = False  # more is coming
        deliveries = [
            asyncio.ensure_future(
                self._deliver_route(stacks[name], [pending[i].outcome for i in groups[name]], parking)
            )
            for name in names
        ]
        try:
            await asyncio.sleep(0)  # each route's lanes take their events ...
            if self._flushed:  # ... after the caller asked them to send what they hold
                self.flush()
            reports = await asyncio.gather(*deliveries)
        finally:
            for delivery in deliveries:
                delivery.cancel()
        merged, due = DeliveryReport(), dict[int, tuple[str, float]]()
        for name, part in zip(names, reports, strict=True):
            positions = groups[name]
            merged.delivered.extend(positions[i] for i in part.delivered)
            merged.dead.extend(replace(letter, index=positions[letter.index]) for letter in part.dead)
            merged.deferred.extend(positions[i] for i in part.deferred)
            due.update((positions[i], (part.defer_reason, part.defer_s)) for i in part.deferred)
            merged.retries += part.retries
            merged.throttled += part.throttled
        return merged, due

    async def _deliver_route(
        self, stack: RouteStack, items: list[Forwarded], parking: list[RouteHealth]
    ) -> DeliveryReport:
        health = stack.health
        if self.routing.park and health is not None and health.parked:
            # Parked, or draining behind what was parked: to the retry topic without a try.
            health.parking()
            parking.append(health)
            return DeliveryReport(
                deferred=list(range(len(items))), defer_s=health.delay_s(), defer_reason="route_parked"
            )
        report = await stack.deliverer.deliver(items)
        if health is not None and report.deferred and report.defer_reason == "route_parked":
            health.parking()
            parking.append(health)
        return report

    def _settle_memory(self, prepared: Prepared, report: DeliveryReport | None) -> None:
        """What Amplitude accepted stays remembered; the rest is forgotten (``report`` None: the run failed)."""
        if all(stack.memory is None for stack in self.routing.stacks.values()):
            return
        accepted = set(report.delivered) if report is not None else set()
        for position, item in enumerate(prepared.pending):
            if item.ticket is not None and item.route.memory is not None:
                item.route.memory.settle(item.ticket, position in accepted)

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
    prepared: Prepared, report: DeliveryReport, due: dict[int, tuple[str, float]]
) -> tuple[list[DeadLetterRecord], list[DeadLetterRecord]]:
    """Pure: each pending event's final outcome settled in its ledger slice, and the records to store: events
    parked on the retry topic (deferred by a 429, or their route parked: ``due`` says which and for how long) and
    the batch's dead letters (``prepared.dead`` plus Amplitude's refusals)."""
    pending, dead = prepared.pending, prepared.dead
    rejected = {d.index: d for d in report.dead}
    deferred = set(report.deferred)
    parked: list[DeadLetterRecord] = []
    if not rejected and not deferred and not prepared.parked:
        # The common case, every event delivered: count them by slot without a call per event.
        groups = Counter(
            (
                item.ledger,
                item.outcome.code,
                item.outcome.event["event_type"],
                item.hour,
                item.campaign,
                item.route.name,
            )
            for item in pending
        )
        for (ledger, code, event_type, hour, campaign, route), count in groups.items():
            ledger.outcomes.counts["delivered", "", code, hour, campaign, route] += count
            ledger.event_types.setdefault(code, event_type)
        return parked, dead
    now_s = time.time()
    decoded: dict[int, list[Any]] = {}
    for position, item in enumerate(pending):
        ledger, origin, route = item.ledger, _origin(item.parked_from), item.route.name
        if position in deferred:
            ledger.deferred += 1
            # Not final yet: the outcome is counted when the retry topic's pass settles it.
            source, index = item.parked_from or (item.source, item.index)
            # Keyed by its user, so one user's parked events share a retry partition and keep their order.
            raw = raw_event(item, decoded)
            source = replace(source, key=partition_key(raw))
            why, wait_s = due.get(position, ("throttled", 0.0))
            parked.append(
                DeadLetterRecord(
                    orjson.dumps(raw, default=str),
                    source,
                    why,
                    event_index=index,
                    event_code=item.outcome.code,
                    status=429 if why == "throttled" else None,
                    not_before_ms=int((now_s + wait_s) * 1000),
                    route=route,
                )
            )
            continue
        letter = rejected.get(position)
        if letter is None:
            ledger.settle(("delivered", "", item.outcome.code, item.hour, item.campaign, route), origin)
            ledger.event_types.setdefault(item.outcome.code, item.outcome.event["event_type"])
            continue
        ledger.settle(("dead_lettered", letter.reason, item.outcome.code, item.hour, item.campaign, route), origin)
        dead.append(
            DeadLetterRecord(
                orjson.dumps(raw_event(item, decoded), default=str),
                item.source,
                letter.reason,
                event_index=item.index,
                event_code=item.outcome.code,
                status=letter.status,
                response_excerpt=letter.excerpt,
                attempts=letter.attempts,
                route=route,
            )
        )
    return parked, dead


def raw_event(item: _Pending, decoded: dict[int, list[Any]]) -> Any:
    """The MoEngage event as it came, decoded again from its message's bytes (once per message: ``decoded`` is
    keyed by the id of the bytes, which the run holds meanwhile). The bytes decoded once already, so they decode
    the same way again."""
    events = decoded.get(id(item.value))
    if events is None:
        found = decode_message(item.value, len(item.value))
        events = decoded[id(item.value)] = found.events if isinstance(found, Decoded) else []
    return events[item.index]
