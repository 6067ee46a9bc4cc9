"""The worker's periodic look at itself: true lag, offsets lost to retention, the oldest record in hand, stalls.

Every few seconds (the worker's timer) it asks Kafka where each assigned partition starts and ends, and:

- turns the skips the ``LossWatch`` saw into losses where they lie below the log start, and reports each once:
  ``forwarder_offsets_lost_total``, an error log line with the range and the topic's ``retention.ms``, and one
  dead-letter record per range (reason ``lost_to_retention``);
- sets ``forwarder_consumer_lag`` to highwater - max(committed, log start): what is still to be read and
  *can* be read;
- sets ``forwarder_oldest_unprocessed_age_seconds`` and warns when it passes half the topic's retention, before
  Kafka starts deleting what the worker has not finished;
- declares a stall (``/healthz`` 503, ``forwarder_stalled`` 1, a warning naming the partitions) when a
  partition's lag stays while nothing of it is taken;
- declares a blocked commit (``/healthz`` 503, ``forwarder_commit_blocked`` 1 for the partition, a warning naming
  the first missing offset) when acknowledged offsets wait above one that never was (``CommitWatch``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from forwarder.health import Health
from forwarder.kafka.dead_letters import (
    LOST_TO_RETENTION,
    DeadLetterRecord,
    DeadLetterWriter,
    lost_range_record,
)
from forwarder.kafka.ledger import LedgerWriter
from forwarder.kafka.lost_offsets import LossWatch, PullCounter, Suspect
from forwarder.kafka.order import CommitWatch, OffsetRange, Pending
from forwarder.kafka.progress import Partition, Progress, Reread, StallWatch
from forwarder.ledger.records import LedgerRecord
from forwarder.worker.metrics import Metrics

log = logging.getLogger("forwarder.watchdog")

RETENTION_REFRESH_S = 600.0
AGE_WARNING_EVERY_S = 300.0
# How long to wait for the pulls that were under way when a position was read (each lasts ~0.1 s).
PULL_SETTLE_TIMEOUT_S = 5.0


class ConsumerView(Protocol):
    """What the watchdog asks of the consumer (faust's, in the worker)."""

    def assignment(self) -> set[Any]: ...
    def highwater(self, tp: Any) -> int | None: ...
    async def earliest_offsets(self, *partitions: Any) -> Any: ...
    async def position(self, tp: Any) -> int | None: ...


class WatchdogKafka(Protocol):
    """What the watchdog writes and asks beyond the consumer (``KafkaSide`` in the worker)."""

    async def write(self, records: list[DeadLetterRecord]) -> None: ...
    async def record_lost(self, lost: OffsetRange) -> None: ...
    async def retention_ms(self, topic: str) -> int | None: ...


class KafkaSide:
    """The Kafka clients the watchdog needs only now and then, opened on first use."""

    def __init__(
        self,
        client_options: dict[str, Any],
        dlq_topic: str,
        max_value_bytes: int,
        ledger_topic: str | None = None,
        ledger_sources: dict[str, str] | None = None,
    ) -> None:
        """``ledger_sources``: topic -> the ledger's name for what reads it (``stream``, ``retry``)."""
        self._options = client_options
        self._dlq_topic = dlq_topic
        self._max_value_bytes = max_value_bytes
        self._ledger_topic = ledger_topic
        self._ledger_sources = ledger_sources or {}
        self._producer: AIOKafkaProducer | None = None
        self._retention: dict[str, tuple[float, int | None]] = {}

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(**self._options, acks="all", enable_idempotence=True)
            await producer.start()
            self._producer = producer
        return self._producer

    async def write(self, records: list[DeadLetterRecord]) -> None:
        await DeadLetterWriter(await self._started(), self._dlq_topic, self._max_value_bytes).write(records)

    async def record_lost(self, lost: OffsetRange) -> None:
        """The ledger covers the range too, so ``forwarder report`` tells it from offsets never processed."""
        source = self._ledger_sources.get(lost.topic)
        if self._ledger_topic is None or source is None:
            return
        record = LedgerRecord(
            source, lost.topic, lost.partition, lost.first, lost.last, written_at_ms=int(time.time() * 1000), lost=True
        )
        await LedgerWriter(await self._started(), self._ledger_topic).write([record])

    async def retention_ms(self, topic: str) -> int | None:
        """The topic's ``retention.ms`` (-1: kept forever), cached; None when Kafka would not say."""
        cached = self._retention.get(topic)
        if cached is not None and time.monotonic() - cached[0] < RETENTION_REFRESH_S:
            return cached[1]
        value: int | None = None
        admin = AIOKafkaAdminClient(**self._options)
        try:
            await admin.start()
            responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            for response in responses:
                for resource in response.to_object()["resources"]:
                    for entry in resource["config_entries"]:
                        if entry["config_names"] == "retention.ms" and entry["config_value"] is not None:
                            value = int(entry["config_value"])
        except Exception as exc:  # the figure only decorates a log line; never let it stop the watchdog
            log.warning("could not read retention.ms", extra={"fields": {"topic": topic, "error": repr(exc)}})
        finally:
            await admin.close()
        self._retention[topic] = (time.monotonic(), value)
        return value

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class LossReporter:
    """Reports offsets lost to retention once each, whoever finds them (the watchdog's look, an agent's guard)."""

    def __init__(self, watch: LossWatch, metrics: Metrics, kafka: WatchdogKafka) -> None:
        self._watch = watch
        self._metrics = metrics
        self._kafka = kafka

    async def hole_below_log_start(self, hole: OffsetRange) -> None:
        """The guard met offsets below the log start: the part of them not reported yet is reported now."""
        lost = self._watch.confirm(Suspect(hole.topic, hole.partition, hole.first, hole.last + 1), hole.last + 1)
        if lost is not None:
            await self.report(lost)

    async def report(self, lost: OffsetRange) -> None:
        retention_ms = await self._kafka.retention_ms(lost.topic)
        # Stored first: a loss counts once it can be found again in the dead-letter topic.
        try:
            await self._kafka.write([lost_range_record(lost, retention_ms)])
            await self._kafka.record_lost(lost)
        except Exception:
            self._watch.unconfirm(lost)  # reported on a later look, not forgotten
            raise
        self._metrics.offsets_lost.labels(lost.topic, str(lost.partition)).inc(lost.count)
        log.error(
            "records deleted by Kafka before they were read: they cannot be delivered",
            extra={"fields": {**lost.loss_fields(retention_ms), "reason": LOST_TO_RETENTION}},
        )


class Watchdog:
    def __init__(
        self,
        consumer: ConsumerView,
        committed: Any,
        watch: LossWatch,
        progress: Progress,
        metrics: Metrics,
        health: Health,
        kafka: WatchdogKafka,
        pulls: PullCounter,
        commits: Callable[[], Mapping[Partition, Pending]] | None = None,
        reread: Reread | None = None,
    ) -> None:
        """``committed``: a mapping from partition to the group's committed offset (faust keeps it);
        ``commits``: each assigned partition's commit state (the fork's consumer); ``reread(stalled)``: the ranges
        of stalled partitions that were fetched and never reached their agent, sought back to (the fork's app)."""
        self._consumer = consumer
        self._committed = committed
        self._watch = watch
        self._progress = progress
        self._metrics = metrics
        self._health = health
        self._kafka = kafka
        self._pulls = pulls
        self._commits = commits
        self._stalls = StallWatch(progress, health, metrics, reread)
        self._commit_watch = CommitWatch(progress.stall_timeout_s, progress.clock)
        self._losses = LossReporter(watch, metrics, kafka)
        self._age_warned: dict[Partition, float] = {}
        self.lag: dict[Partition, int] = {}

    async def tick(self) -> None:
        """One look; never raises: a watchdog must not be what stops the worker (a failed look is logged and the
        next one tries again)."""
        try:
            await self._look()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("the watchdog could not look this time; it will again", extra={"fields": {"error": repr(exc)}})

    async def _look(self) -> None:
        tps = sorted(self._consumer.assignment())
        if not tps:
            return
        log_start = {(tp.topic, tp.partition): offset for tp, offset in (await self._earliest(tps)).items()}
        await self._observe_positions(tps)
        await self._report_losses(log_start)
        self._measure_lag(tps, log_start)
        await self._measure_age(tps)
        blocked = self._check_commits()
        await self._check_stall(blocked)

    async def _earliest(self, tps: list[Any]) -> dict[Any, int]:
        return dict(await self._consumer.earliest_offsets(*tps))

    async def _observe_positions(self, tps: list[Any]) -> None:
        """A position past every record pulled means the client skipped (a reset) with nothing after it yet.

        Records the client returned before the position was read are recorded only when their pull ends, so the
        comparison waits for the pulls under way at that moment.
        """
        positions: dict[Any, int] = {}
        for tp in tps:
            try:
                position = await asyncio.wait_for(self._consumer.position(tp), timeout=2.0)
            except Exception:  # noqa: S112 - a partition mid-rebalance has no position: look again next tick
                continue
            if position is not None:
                positions[tp] = position
        if not positions:
            return
        if not await self._pulls.settled(self._pulls.started, PULL_SETTLE_TIMEOUT_S):
            return
        for tp, position in positions.items():
            self._watch.at_position(tp.topic, tp.partition, position)

    async def _report_losses(self, log_start: dict[Partition, int]) -> None:
        for suspect in self._watch.take_suspects():
            start = log_start.get((suspect.topic, suspect.partition))
            if start is None:
                continue  # not assigned any more: whoever has it now compares its own committed offset
            lost = self._watch.confirm(suspect, start)
            if lost is not None:
                await self._losses.report(lost)

    def _measure_lag(self, tps: list[Any], log_start: dict[Partition, int]) -> None:
        lag: dict[Partition, int] = {}
        assigned = self._consumer.assignment()
        for tp in tps:
            if tp not in assigned:
                continue  # revoked while we looked
            try:
                highwater = self._consumer.highwater(tp)
            except (AssertionError, KafkaError):  # revoked between the two questions (aiokafka asserts)
                continue
            if highwater is None:
                continue
            key = (tp.topic, tp.partition)
            done = max(self._committed.get(tp) or 0, log_start.get(key, 0))
            lag[key] = max(0, highwater - done)
            self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag[key])
        self.lag = lag

    async def _measure_age(self, tps: list[Any]) -> None:
        now = time.time()
        for tp in tps:
            key = (tp.topic, tp.partition)
            age_s = self._progress.oldest_age_s(tp.topic, tp.partition, now)
            self._metrics.oldest_unprocessed_age.labels(tp.topic, str(tp.partition)).set(age_s)
            if age_s <= 0 or time.monotonic() - self._age_warned.get(key, -AGE_WARNING_EVERY_S) < AGE_WARNING_EVERY_S:
                continue
            retention_ms = await self._kafka.retention_ms(tp.topic)
            if retention_ms is None or retention_ms < 0 or age_s * 1000 < retention_ms / 2:
                continue
            self._age_warned[key] = time.monotonic()
            log.warning(
                "the oldest unprocessed record is past half the topic's retention: Kafka may delete unread records",
                extra={
                    "fields": {
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "age_s": round(age_s, 1),
                        "retention_ms": retention_ms,
                    }
                },
            )

    async def _check_stall(self, commit_blocked: set[Partition]) -> None:
        """``commit_blocked``: partitions whose lag is a hole behind records already read: the commit watch reports
        them, not as a stall."""
        await self._stalls.look({key: behind for key, behind in self.lag.items() if key not in commit_blocked})

    def _check_commits(self) -> set[Partition]:
        if self._commits is None:
            return set()
        check = self._commit_watch.check(self._commits())
        self._metrics.show_commits(check)
        self._health.commit_blocked = check.reason
        return check.held
