"""``forwarder cohorts worker``: a Faust agent that keeps MoEngage segments in step with Amplitude cohorts.

It reads the cohorts topic one record at a time (the records are large: a webhook batch of 1,000 users, a
snapshot part of thousands) and keeps each cohort's membership as sent to MoEngage in a Faust table, whose
changelog on Kafka lets a restarted or moved worker recover it. A state change goes to the changelog partition of
the record being processed, so the table has as many partitions as the topic and each cohort's state lives with
its records (written in batches: ``forwarder.cohorts.changelog``).

Delivery discipline as the forwarder's (shared/spec/faust-delivery.md): manual acks (``noack``), one agent
instance, ``CrashingSupervisor``; the loop itself (what is acknowledged when) is ``forwarder.cohorts.loop``.
The same offset guard and ordered commit as the forwarder's (``forwarder.kafka.order``): records in offset
order, each once; a commit held behind a hole is reported (``forwarder_commit_blocked``, ``/healthz`` 503).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from forwarder.cohorts.changelog import ChangelogStore
from forwarder.cohorts.loop import CohortLoop
from forwarder.cohorts.stack import cohort_stack
from forwarder.cohorts.status import StatusPublisher
from forwarder.cohorts.sync import CohortSyncer, Identity
from forwarder.health import Health, serve_health
from forwarder.kafka.dead_letters import LOST_TO_RETENTION, lost_range_record
from forwarder.kafka.fastpath import GuardedApp
from forwarder.kafka.options import WorkerTiming, faust_options
from forwarder.kafka.order import CommitWatch, OffsetRange, Pending
from forwarder.kafka.order_metrics import OffsetMetrics
from forwarder.kafka.progress import Partition, Progress, StallWatch
from forwarder.settings import CohortWorkerSettings

log = logging.getLogger("forwarder.cohorts")

TABLE_NAME = "cohort-members"
TIMER_S = 2.0


class CohortMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["cohort_id"]
        self.members = Gauge(
            "cohort_members",
            "Members MoEngage was told are in the segment.",
            [*labels, "identity"],
            registry=self.registry,
        )
        self.snapshot = Gauge(
            "cohort_snapshot_members", "Members in the last snapshot.", labels, registry=self.registry
        )
        self.unmapped = Gauge("cohort_unmapped_members", "Members with neither id.", labels, registry=self.registry)
        self.pending = Gauge("cohort_pending_members", "Members waiting for MoEngage.", labels, registry=self.registry)
        self.dead = Gauge(
            "cohort_dead_lettered_members", "Members in refused requests.", labels, registry=self.registry
        )
        self.last_sync = Gauge(
            "cohort_last_sync_timestamp_seconds", "When the cohort was last synced.", labels, registry=self.registry
        )
        self.requests = Counter(
            "moengage_requests_total", "Cohort Sync requests by answer.", ["status"], registry=self.registry
        )
        self.latency = Histogram("moengage_request_seconds", "Time to MoEngage's answer.", registry=self.registry)
        self.offsets = OffsetMetrics(self.registry)

    def observe(self, status: str, seconds: float) -> None:
        self.requests.labels(status=status).inc()
        self.latency.observe(seconds)

    def render(self, syncer: CohortSyncer | None) -> bytes:
        for s in syncer.statuses.values() if syncer is not None else ():
            self.members.labels(s.cohort_id, "uid").set(s.in_uid)
            self.members.labels(s.cohort_id, "anonymous").set(s.in_anonymous)
            self.snapshot.labels(s.cohort_id).set(s.snapshot_members or 0)
            self.unmapped.labels(s.cohort_id).set(s.unmapped)
            self.pending.labels(s.cohort_id).set(s.pending)
            self.dead.labels(s.cohort_id).set(s.dead_lettered)
            self.last_sync.labels(s.cohort_id).set(s.last_sync_ms / 1000)
        return generate_latest(self.registry)


def _new_app(settings: CohortWorkerSettings, partitions: int) -> GuardedApp:
    cohorts = settings.cohorts
    timing = WorkerTiming(cohorts.web_host, cohorts.web_port, cohorts.session_timeout_s, cohorts.commit_interval_s)
    return GuardedApp(
        cohorts.group_id,
        **faust_options(settings, cohorts.group_id, timing),
        topic_partitions=partitions,
        topic_replication_factor=cohorts.topic_replication,
        # No standby copies: each worker holds only its own cohorts (the memory bound in docs/cohorts.md); a moved
        # partition is recovered from the changelog.
        table_standby_replicas=0,
        # Records are large (up to a few MB): a small buffer bounds memory.
        stream_buffer_maxsize=16,
    )


def create_cohorts_app(settings: CohortWorkerSettings, partitions: int, health: Health | None = None) -> faust.App:
    health = health or Health(upstream="moengage")
    metrics = CohortMetrics()
    cohorts = settings.cohorts
    app = _new_app(settings, partitions)
    topic = app.topic(cohorts.topic, value_type=bytes, key_type=bytes)
    table = app.Table(TABLE_NAME, partitions=partitions, key_type=bytes, value_type=bytes)
    current: dict[str, Any] = {"loop": None, "syncer": None, "publisher": None, "store": None, "dead_letters": None}

    async def on_lost(lost: OffsetRange) -> None:
        await _report_lost(lost, current["dead_letters"], metrics)

    progress = Progress(cohorts.stall_timeout_s, one_at_a_time=True)
    stalls = StallWatch(progress, health, metrics.offsets, app.reread_unseen)
    guard = app.guard_with(
        lambda hole: metrics.offsets.offset_gaps.labels(hole.topic, str(hole.partition)).inc(), on_lost
    )
    commit_watch = CommitWatch(cohorts.stall_timeout_s)

    def answered(status: str, seconds: float) -> None:
        metrics.observe(status, seconds)
        health.upstream_answered(status)

    @app.agent(topic, concurrency=1)
    async def sync(stream: Any) -> None:
        async with cohort_stack(settings, on_answer=answered) as stack:
            publisher = StatusPublisher(stack.producer, cohorts.status_topic)
            store = ChangelogStore(table.data, stack.producer, table.changelog_topic.get_topic_name())
            syncer = CohortSyncer(
                store,
                stack.client,
                stack.dead_letters,
                segment_prefix=cohorts.segment_prefix,
                identity=Identity(cohorts.anonymous_property, settings.moengage.anonymous_field),
                on_status=publisher.changed,
                persist=store.flush,
            )
            loop = CohortLoop(guard, syncer, store, publisher, app.acknowledge, health, progress=progress)
            current.update(loop=loop, syncer=syncer, publisher=publisher, store=store, dead_letters=stack.dead_letters)
            health.consuming = True
            async for event in stream.noack().events():
                await loop.take(event)

    @app.timer(interval=TIMER_S)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        publisher = current["publisher"]
        if publisher is not None:  # pending counts during a long sync
            await publisher.flush()
        if health.consuming:
            states = app.commit_states()
            check = commit_watch.check(states)
            metrics.offsets.show_commits(check)
            health.commit_blocked = check.reason
            await stalls.look(_lag(app.consumer, states, check.held))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        """The table's data stays: faust keeps a partition this worker gets back without re-reading its
        changelog."""
        if current["loop"] is not None:
            current["loop"].revoked({tp.partition for tp in revoked if tp.topic == cohorts.topic})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """Partitions that went to another worker: their cohorts' keys leave this worker's memory (faust recovers
        a partition it gets back later from the start of its changelog)."""
        progress.assigned((tp.topic, tp.partition) for tp in assigned)
        gone = set(range(partitions)) - {tp.partition for tp in assigned if tp.topic == cohorts.topic}
        store = current["store"]
        if store is not None and gone:
            dropped = store.forget_partitions(gone, partitions)
            log.info("partitions moved away; their cohorts' state dropped here", extra={"fields": {"keys": dropped}})

    serve_health(app, health, lambda: metrics.render(current["syncer"]))
    return app


async def _report_lost(lost: OffsetRange, dead_letters: Any, metrics: CohortMetrics) -> None:
    """Offsets Kafka deleted before they were read: a dead letter first (a loss counts once it can be found
    again), then the count and the line."""
    if dead_letters is not None:
        await dead_letters.write([lost_range_record(lost, None)])
    metrics.offsets.offsets_lost.labels(lost.topic, str(lost.partition)).inc(lost.count)
    log.error(
        "records deleted by Kafka before they were read: they cannot be synced",
        extra={"fields": {**lost.loss_fields(None), "reason": LOST_TO_RETENTION}},
    )


def _lag(consumer: Any, states: Mapping[Partition, Pending], held: set[Partition]) -> dict[Partition, int]:
    """What each assigned partition still has to read past its commit base (a held commit is not a stall)."""
    lag: dict[Partition, int] = {}
    for (topic, partition), state in states.items():
        if (topic, partition) in held:
            continue
        try:
            highwater = consumer.highwater(TP(topic, partition))
        except Exception:  # noqa: S112 - revoked while we looked: the next look has the new assignment
            continue
        if highwater is not None:
            lag[topic, partition] = max(0, highwater - state.next_offset)
    return lag


def run_cohorts_worker(settings: CohortWorkerSettings, partitions: int) -> None:
    from forwarder.logs import logging_config

    app = create_cohorts_app(settings, partitions)
    level = settings.cohorts.log_level
    worker = faust.Worker(app, loglevel=level, logging_config=logging_config(level), redirect_stdouts=False)
    worker.execute_from_commandline()
