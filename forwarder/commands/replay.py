"""``forwarder replay`` and ``forwarder replay-dlq``: re-send what was already consumed, safely.

Neither touches the live worker's group. Each reads up to the end offsets it saw when it started, so
records written meanwhile (new traffic, new dead letters) are not part of this run, and commits its
progress under its own group id, derived from its arguments: the same command, run again after an
interruption, resumes where the last delivered batch ended. Events map through the same core, with the
same insert_ids, so anything sent twice is one event in Amplitude.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from tqdm import tqdm

from forwarder.commands.summary import print_summary
from forwarder.core.pipeline import MappingRules, process_message
from forwarder.kafka.dead_letters import LOST_TO_RETENTION, SourceRef, header_map
from forwarder.kafka.security import client_options
from forwarder.processing import BatchSummary, SourceMessage
from forwarder.settings import Settings
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
        raise SystemExit(f"topic {topic!r} does not exist or has no partitions")
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


def _group_id(settings: Settings, kind: str, *parts: str) -> str:
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
    return f"{settings.topics.group_id}-{kind}-{digest}"


async def _run(
    settings: Settings,
    topic: str,
    group: str,
    seek_ms: int | None,
    rules: MappingRules,
    dry_run: bool,
    api: str,
    rate: float,
    restart: bool,
    keep: Callable[[ConsumerRecord], bool],
    label: str,
) -> BatchSummary:
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    limiter = RateLimiter(rate)
    try:
        plan = await _plan(consumer, topic, group, seek_ms, restart)
        if dry_run:

            async def handle(records: list[ConsumerRecord]) -> BatchSummary:
                summary = BatchSummary(messages=len(records))
                for record in records:
                    if keep(record):
                        for outcome in process_message(record.value or b"", rules).outcomes:
                            summary.outcomes.count(outcome)
                return summary

            return await _drive(consumer, plan, handle, False, settings.worker.batch_max_messages, limiter, label)

        async with processing_stack(settings, rules, api=api, source=label) as stack:
            processor = stack.processor

            async def deliver(records: list[ConsumerRecord]) -> BatchSummary:
                wanted = [r for r in records if keep(r)]
                messages = [
                    SourceMessage(SourceRef(r.topic, r.partition, r.offset, r.key), r.value or b"") for r in wanted
                ]
                return await processor.process(messages) if messages else BatchSummary(messages=len(records))

            return await _drive(consumer, plan, deliver, True, settings.worker.batch_max_messages, limiter, label)
    finally:
        await consumer.stop()


def replay_window(
    settings: Settings,
    start: str,
    end: str,
    events: str | None,
    dry_run: bool,
    api: str,
    rate: float,
    slack_s: float,
    restart: bool,
) -> int:
    from forwarder.core.select import Selection

    start_ms, end_ms = parse_time(start), parse_time(end)
    if end_ms <= start_ms:
        print("forwarder replay: --to must be after --from", file=sys.stderr)
        return 2
    selection = Selection.parse(events or settings.worker.events)
    rules = MappingRules(
        selection=selection,
        min_id_length=settings.amplitude.min_id_length,
        max_message_bytes=settings.worker.max_message_bytes,
        window=(start_ms, end_ms),
    )
    group = _group_id(settings, "replay", settings.topics.source_topic, str(start_ms), str(end_ms), selection.text, api)
    summary = asyncio.run(
        _run(
            settings,
            settings.topics.source_topic,
            group,
            start_ms - int(slack_s * 1000),
            rules,
            dry_run,
            api,
            rate,
            restart,
            lambda r: True,
            "replay",
        )
    )
    print_summary(summary, dry_run)
    return 0


def replay_dead_letters(settings: Settings, reason: str | None, dry_run: bool, api: str, rate: float) -> int:
    def keep(record: ConsumerRecord) -> bool:
        headers = header_map(list(record.headers or []))
        if headers.get("value_omitted"):
            log.warning(
                "skipping a dead letter whose value was too large to store; replay it from the source offset",
                extra={"fields": {k: headers.get(k) for k in ("source_topic", "source_partition", "source_offset")}},
            )
            return False
        if headers.get("reason") == LOST_TO_RETENTION:
            log.warning(
                "skipping a record of offsets Kafka deleted before they were read: there is nothing to re-send",
                extra={
                    "fields": {
                        k: headers.get(k) for k in ("source_topic", "source_partition", "first_offset", "last_offset")
                    }
                },
            )
            return False
        # "invalid_field" matches "invalid_field:time"; no reason: every dead letter.
        return reason is None or headers.get("reason", "").startswith(reason)

    # Per reason: a run for one reason must not commit past the dead letters of another.
    group = _group_id(settings, "replay-dlq", settings.topics.dlq_topic, reason or "*")
    rules = settings.mapping_rules()
    summary = asyncio.run(
        _run(settings, settings.topics.dlq_topic, group, None, rules, dry_run, api, rate, False, keep, "replay-dlq")
    )
    print_summary(summary, dry_run)
    return 0
