"""``forwarder replay`` and ``forwarder replay-dlq``: re-send what was already consumed, safely.

Neither touches the live worker's group. Each reads up to the end offsets it saw when it started, so
records written meanwhile (new traffic, new dead letters) are not part of this run, and commits its
progress under its own group id, derived from its arguments: the same command, run again after an
interruption, resumes where the last delivered batch ended. Events map through the same core, with the
same insert_ids, so anything sent twice is one event in Amplitude.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from tqdm import tqdm

from forwarder import logs
from forwarder.command import Command, CommandError, require_kafka, usage_error
from forwarder.core.decode import DecodeError, decode_message
from forwarder.core.outcomes import Filtered, Invalid, Outcome
from forwarder.core.pipeline import MappingRules, process_decoded
from forwarder.kafka.dead_letters import LOST_TO_RETENTION, SourceRef, header_map, route_of
from forwarder.kafka.security import client_options
from forwarder.processing import BatchSummary, SourceMessage
from forwarder.routes import RouteTable, load_routes
from forwarder.settings import ForwarderSettings, load_settings
from forwarder.summary import print_summary
from forwarder.wiring import processing_stack

log = logging.getLogger("forwarder.commands.replay")

# Records are written after their events happen (MoEngage batches, retries, ingestion lag): seek this much
# earlier than ``--from`` by record timestamp, then filter on the event's own time.
DEFAULT_SLACK_S = 3600.0


def parse_time(text: str) -> int:
    """ISO-8601 (naive = UTC) -> epoch ms."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class RateLimiter:
    """At most ``per_second`` events on average, in whole batches."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._next = time.monotonic()

    async def take(self, events: int) -> None:
        if self.per_second <= 0:
            return
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(self._next, now) + events / self.per_second


@dataclass
class ReplayPlan:
    topic: str
    group: str
    starts: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]

    @property
    def total(self) -> int:
        return sum(max(0, self.ends[tp] - self.starts[tp]) for tp in self.ends)


async def _plan(consumer: AIOKafkaConsumer, topic: str, group: str, seek_ms: int | None, restart: bool) -> ReplayPlan:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    if not partitions:
        raise CommandError(f"topic {topic!r} does not exist or has no partitions")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    beginnings = await consumer.beginning_offsets(tps)
    starts: dict[TopicPartition, int] = {}
    by_time = await consumer.offsets_for_times({tp: seek_ms for tp in tps}) if seek_ms is not None else {}
    for tp in tps:
        committed = None if restart else await consumer.committed(tp)
        if committed is not None:
            starts[tp] = committed  # resume
        elif seek_ms is not None:
            found = by_time.get(tp)
            starts[tp] = found.offset if found is not None else ends[tp]
        else:
            starts[tp] = beginnings[tp]
    return ReplayPlan(topic, group, starts, ends)


Handle = Callable[[list[ConsumerRecord]], Awaitable[BatchSummary]]


async def _drive(
    consumer: AIOKafkaConsumer,
    plan: ReplayPlan,
    handle: Handle,
    commit: bool,
    batch_messages: int,
    limiter: RateLimiter,
    label: str,
) -> BatchSummary:
    total = BatchSummary()
    remaining = {tp for tp in plan.ends if plan.starts[tp] < plan.ends[tp]}
    for tp in plan.ends:
        consumer.seek(tp, plan.starts[tp])
    with tqdm(total=plan.total, desc=label, unit="msg", file=sys.stderr) as bar:
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=batch_messages)
            batch: list[ConsumerRecord] = []
            positions: dict[TopicPartition, int] = {}
            for tp, records in fetched.items():
                wanted = [r for r in records if r.offset < plan.ends[tp]]
                batch.extend(wanted)
                if wanted:
                    positions[tp] = wanted[-1].offset + 1
                if not wanted or wanted[-1].offset + 1 >= plan.ends[tp]:
                    positions.setdefault(tp, plan.ends[tp])
                    if positions[tp] >= plan.ends[tp]:
                        remaining.discard(tp)
            if not batch:
                continue
            summary = await handle(batch)
            total.add(summary)
            await limiter.take(max(1, summary.read))
            if commit:
                await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in positions.items()})
            bar.update(len(batch))
    return total


def _group_id(settings: ForwarderSettings, kind: str, *parts: str) -> str:
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
    return f"{settings.topics.group_id}-{kind}-{digest}"


@dataclass(frozen=True)
class Sending:
    """How a run sends: ``--dry-run``, ``--api``, ``--rate``, ``--route`` (replay, replay-dlq and backfill share
    them)."""

    dry_run: bool
    api: str
    rate: float
    route: str | None = None

    @classmethod
    def of(cls, args: argparse.Namespace) -> Sending:
        return cls(args.dry_run, args.api, args.rate, args.route)


@dataclass(frozen=True)
class Pass:
    """One run over a topic: where it reads from, what it keeps, how it maps and sends."""

    topic: str
    group: str
    seek_ms: int | None
    routes: RouteTable
    restart: bool
    keep: Callable[[ConsumerRecord], bool]
    label: str
    sending: Sending


async def _run(settings: ForwarderSettings, run: Pass) -> BatchSummary:
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=run.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    limiter = RateLimiter(run.sending.rate)
    batch = settings.worker.batch_max_messages
    try:
        plan = await _plan(consumer, run.topic, run.group, run.seek_ms, run.restart)
        if run.sending.dry_run:

            async def handle(records: list[ConsumerRecord]) -> BatchSummary:
                summary = BatchSummary(messages=len(records))
                for record in records:
                    if run.keep(record):
                        for outcome in mapped(run.routes, record.value or b"", route_of(record.headers)):
                            summary.outcomes.count(outcome)
                return summary

            return await _drive(consumer, plan, handle, False, batch, limiter, run.label)

        async with processing_stack(settings, run.routes, api=run.sending.api, source=run.label) as stack:
            processor = stack.processor

            async def deliver(records: list[ConsumerRecord]) -> BatchSummary:
                wanted = [r for r in records if run.keep(r)]
                messages = [
                    SourceMessage(
                        SourceRef(r.topic, r.partition, r.offset, r.key), r.value or b"", route=route_of(r.headers)
                    )
                    for r in wanted
                ]
                return await processor.process(messages) if messages else BatchSummary(messages=len(records))

            return await _drive(consumer, plan, deliver, True, batch, limiter, run.label)
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class ReplayRequest:
    """``forwarder replay``: the source topic's events whose own time is in [start, end)."""

    start: str
    end: str
    events: str | None
    slack_s: float
    restart: bool
    sending: Sending


def mapped(routes: RouteTable, value: bytes, header_route: str | None) -> list[Outcome]:
    """What a dry run makes of one record: mapped with its route's rules (the worker's choice of route)."""
    decoded = decode_message(value, routes.default_rules.max_message_bytes)
    if isinstance(decoded, DecodeError):
        return [Invalid(None, decoded.reason, decoded.detail)]
    route = routes.choose(header_route, decoded.app_name)
    if isinstance(route, tuple):  # no route takes it, or a replay's --route is another
        why = route[0]
        return [Invalid(None, why) if why == "no_route" else Filtered("", why) for _ in decoded.events]
    return process_decoded(decoded, route.rules).outcomes


def replay_routes(settings: ForwarderSettings, route: str | None) -> RouteTable:
    """The routes of a replay, replay-dlq or backfill: user properties ``$setOnce`` only; ``--route``: one."""
    routes = load_routes(settings, os.environ, replaying=True)
    try:
        return routes.only(route)
    except ValueError as exc:
        raise usage_error(f"--route: {exc}") from None


def replay_window(settings: ForwarderSettings, request: ReplayRequest) -> int:
    from forwarder.core.select import Selection

    try:
        start_ms, end_ms = parse_time(request.start), parse_time(request.end)
        selection = Selection.parse(request.events) if request.events else None
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    if end_ms <= start_ms:
        raise usage_error("--to must be after --from")

    def in_window(rules: MappingRules) -> MappingRules:
        return dataclasses.replace(rules, selection=selection or rules.selection, window=(start_ms, end_ms))

    routes = replay_routes(settings, request.sending.route).with_rules(in_window)
    source = settings.topics.source_topic
    api = request.sending.api
    text = selection.text if selection else settings.worker.events
    group = _group_id(settings, "replay", source, str(start_ms), str(end_ms), text, api, request.sending.route or "")
    seek_ms = start_ms - int(request.slack_s * 1000)
    run = Pass(source, group, seek_ms, routes, request.restart, lambda r: True, "replay", request.sending)
    print_summary(asyncio.run(_run(settings, run)), request.sending.dry_run)
    return 0


def _replayable(reason: str | None) -> Callable[[ConsumerRecord], bool]:
    def keep(record: ConsumerRecord) -> bool:
        headers = header_map(list(record.headers or []))
        if headers.get("value_omitted"):
            log.warning(
                "skipping a dead letter whose value was too large to store; replay it from the source offset",
                extra={"fields": {k: headers.get(k) for k in ("source_topic", "source_partition", "source_offset")}},
            )
            return False
        if headers.get("reason") == LOST_TO_RETENTION:
            fields = ("source_topic", "source_partition", "first_offset", "last_offset")
            log.warning(
                "skipping a record of offsets Kafka deleted before they were read: there is nothing to re-send",
                extra={"fields": {k: headers.get(k) for k in fields}},
            )
            return False
        # "invalid_field" matches "invalid_field:time"; no reason: every dead letter.
        return reason is None or headers.get("reason", "").startswith(reason)

    return keep


def replay_dead_letters(settings: ForwarderSettings, reason: str | None, sending: Sending) -> int:
    # Per reason (and route): a run for one reason must not commit past the dead letters of another.
    dlq = settings.topics.dlq_topic
    group = _group_id(settings, "replay-dlq", dlq, reason or "*", *([sending.route] if sending.route else []))
    routes = replay_routes(settings, sending.route)
    run = Pass(dlq, group, None, routes, False, _replayable(reason), "replay-dlq", sending)
    print_summary(asyncio.run(_run(settings, run)), sending.dry_run)
    return 0


def sending_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dry-run``, ``--api``, ``--rate``: how replay, replay-dlq and backfill send."""
    parser.add_argument("--dry-run", action="store_true", help="send nothing; report what would be sent")
    parser.add_argument(
        "--api", choices=["batch", "http"], default="batch", help="Amplitude API (default: batch, for historical loads)"
    )
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second at most (0: no limit)")
    parser.add_argument("--route", metavar="NAME", help="only this route's events (FORWARDER_ROUTES_FILE)")


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", required=True, metavar="ISO_TIME")
    parser.add_argument("--to", dest="end", required=True, metavar="ISO_TIME")
    parser.add_argument("--events", metavar="SELECTION", help="default: FORWARDER_EVENTS")
    parser.add_argument(
        "--slack-s",
        type=float,
        default=DEFAULT_SLACK_S,
        help="seek this much before --from by record time (records are written after events)",
    )
    parser.add_argument("--restart", action="store_true", help="ignore the progress of an earlier, interrupted run")
    sending_arguments(parser)


def _run_replay(args: argparse.Namespace) -> int:
    settings = load_settings(ForwarderSettings)
    logs.setup("WARNING")
    require_kafka(settings)
    request = ReplayRequest(args.start, args.end, args.events, args.slack_s, args.restart, Sending.of(args))
    return replay_window(settings, request)


def _dlq_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", help="only dead letters whose reason starts with this")
    sending_arguments(parser)


def _run_replay_dlq(args: argparse.Namespace) -> int:
    settings = load_settings(ForwarderSettings)
    logs.setup("WARNING")
    require_kafka(settings)
    return replay_dead_letters(settings, args.reason, Sending.of(args))


REPLAY = Command(_replay_arguments, _run_replay)
REPLAY_DLQ = Command(_dlq_arguments, _run_replay_dlq)
