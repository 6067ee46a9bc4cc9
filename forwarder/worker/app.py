"""The Faust worker: agents that acknowledge a Kafka message only once all its events have final outcomes.

Delivery discipline (shared/spec/faust-delivery.md): ``noack_take`` (``take`` acks failed batches),
one instance per agent so acks stay in offset order, ``CrashingSupervisor`` so a failure never lets later
events be acked, ``stream_wait_empty=False`` so a stuck POST cannot block shutdown (the unacked batch is
replayed after restart).

Two agents: ``forward`` reads the source topic; ``retry`` reads the retry topic, where events that
Amplitude throttled wait for their due time, so one hot user never holds back everybody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from forwarder.amplitude.delivery import FatalDeliveryError
from forwarder.amplitude.route_health import RouteHealth
from forwarder.health import Health, serve_health
from forwarder.kafka.admin import partition_offsets
from forwarder.kafka.dead_letters import header_map
from forwarder.kafka.fastpath import GuardedApp
from forwarder.kafka.options import WorkerTiming, faust_options
from forwarder.kafka.order import OffsetGuard, Taken
from forwarder.kafka.progress import Progress
from forwarder.kafka.security import client_options
from forwarder.routes import RouteTable, load_routes
from forwarder.settings import WorkerSettings
from forwarder.wiring import processing_stack
from forwarder.worker.acks import AckLoop
from forwarder.worker.metrics import Metrics
from forwarder.worker.watchdog import KafkaSide, LossReporter, Watchdog

log = logging.getLogger("forwarder.worker")

# How often the worker looks at its lag, its losses, the age of what it holds, and whether it stalls.
WATCHDOG_INTERVAL_S = 5.0


@dataclass
class Drain:
    """Shutdown in two steps: stop taking batches, let the in-flight ones finish (up to a deadline)."""

    requested: asyncio.Event = field(default_factory=asyncio.Event)
    busy: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    @contextlib.contextmanager
    def batch(self) -> Any:
        self.hold(1)
        try:
            yield
        finally:
            self.hold(-1)

    def hold(self, change: int) -> None:
        """A batch being taken in, or a run in flight (+1), or done with (-1)."""
        self.busy += change
        if self.busy:
            self.idle.clear()
        else:
            self.idle.set()


def _not_before_s(batch: list[Any]) -> float:
    due = 0.0
    for event in batch:
        headers = event.message.headers or []
        if isinstance(headers, dict):
            headers = list(headers.items())
        value = header_map(list(headers)).get("not_before")
        if value:
            due = max(due, int(value) / 1000)
    return due


def settle_heap() -> None:
    """Once started: move what startup built (faust, the catalogue, modules) out of the collector's sight, and
    collect the young generation less often. Every event allocates a few dozen short-lived objects; with the
    default threshold the collector ran every 700 allocations and walked the whole heap at each full pass.
    Measured on the benchmark topic: 81 -> 70 CPU seconds per million events, RSS +12 MB."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 1000)


class ForwarderApp(GuardedApp):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watchdog_kafka: KafkaSide | None = None

    async def on_stop(self) -> None:
        await super().on_stop()
        if self.watchdog_kafka is not None:
            await self.watchdog_kafka.close()


def _new_app(settings: WorkerSettings) -> ForwarderApp:
    worker = settings.worker
    timing = WorkerTiming(worker.web_host, worker.web_port, worker.session_timeout_s, worker.commit_interval_s)
    return ForwarderApp(
        settings.topics.group_id,
        **faust_options(settings, settings.topics.group_id, timing),
        # faust buffers up to 4,096 messages per stream by default: with 100-event Streams bodies (~55 KB)
        # that is ~225 MB before any work. A batch and a half keeps the agent fed and memory bounded: measured
        # with a 1,000,000-event backlog and 4 runs in flight, 2 batches: 18,700 events/s, peak RSS 299 MB;
        # 1 batch: 14,900 events/s, 253 MB.
        stream_buffer_maxsize=worker.batch_max_messages * 3 // 2,
    )


@dataclass(frozen=True)
class AgentSide:
    """What an agent of this worker shares with the others: settings, counters, health, drain, progress, guard."""

    settings: WorkerSettings
    metrics: Metrics
    health: Health
    drain: Drain
    progress: Progress
    guard: OffsetGuard
    acknowledge: Callable[[Sequence[Taken]], None]
    routes: RouteTable
    # Each route's (with a routes file), shared by both agents: the source agent parks, the retry agent drains.
    route_health: dict[str, RouteHealth]


class ForwardingAgent:
    """One agent's loop: take a batch, admit it in offset order, process it through the ack loop."""

    def __init__(self, side: AgentSide, topic: str, name: str, wait_until_due: bool, source: str) -> None:
        self._side = side
        self._topic = topic
        self._name = name
        self._wait_until_due = wait_until_due
        self._source = source

    def _on_fatal(self, exc: FatalDeliveryError, first: Any) -> None:
        self._side.health.fatal = str(exc)
        log.error(
            "delivery stopped: fatal configuration error; nothing past the last delivered batch is committed; "
            "fix the setting and restart",
            extra={
                "fields": {
                    "agent": self._name,
                    "error": str(exc),
                    "first_unacked": f"{first.topic}/{first.partition}@{first.offset}",
                }
            },
        )

    def _observe(self, status: str, seconds: float) -> None:
        self._side.metrics.observe_request(status, seconds)
        self._side.health.upstream_answered(status)

    async def consume(self, stream: Any) -> None:
        side, settings = self._side, self._side.settings
        stack = processing_stack(
            settings,
            side.routes,
            metrics=side.metrics,
            on_answer=self._observe,
            park_throttled=True,
            source=self._source,
            healths=side.route_health,
            park_routes=not self._wait_until_due,  # the source agent parks; the retry agent tries in place
        )
        async with stack as built:
            acks = AckLoop(
                built.processor,
                settings.worker.batch_max_bytes,
                side.drain.requested.is_set,
                self._on_fatal,
                max_in_flight=settings.worker.max_in_flight,
                parked=self._wait_until_due,  # the retry topic's messages carry where their events came from
                holds=lambda message: side.guard.holds(message.topic, message.partition),
                acknowledge=side.acknowledge,
                on_hold=side.drain.hold,
            )
            side.health.consuming = True
            async with acks.running():
                async for taken in stream.noack_take(
                    settings.worker.batch_max_messages, within=settings.worker.batch_window_s
                ):
                    await self._take(taken, acks)

    async def _take(self, taken: list[Any], acks: AckLoop) -> None:
        side = self._side
        if side.drain.requested.is_set() or side.health.fatal:
            side.progress.taken(self._topic, [(e.message.partition, e.message.timestamp) for e in taken])
            await asyncio.Event().wait()  # taken but not processed: replayed after restart
        # Worked on until its last run is acknowledged, which may be after the next batches were taken.
        hand = side.progress.hand(self._topic, [(e.message.partition, e.message.timestamp) for e in taken])
        try:
            batch = await side.guard.admit_all(taken)  # each partition in offset order, each offset once
            if not batch:
                hand.done()
                return
            if self._wait_until_due and (delay := _not_before_s(batch) - time.time()) > 0:
                await asyncio.sleep(delay)
            with side.drain.batch():
                await acks.submit(batch, settled=hand.done)
        except BaseException:
            hand.done()
            raise


def create_app(
    settings: WorkerSettings, drain: Drain, metrics: Metrics | None = None, health: Health | None = None
) -> faust.App:
    metrics = metrics or Metrics()
    health = health or Health()
    app = _new_app(settings)
    topics = settings.topics
    progress = Progress(settings.worker.stall_timeout_s)
    kafka_side = KafkaSide(
        client_options(settings),
        topics.dlq_topic,
        topics.dlq_max_value_bytes,
        topics.ledger_topic,
        {topics.source_topic: "stream", topics.retry_topic: "retry"},
    )
    app.watchdog_kafka = kafka_side
    guard = app.guard_with(
        lambda hole: metrics.offset_gaps.labels(hole.topic, str(hole.partition)).inc(),
        LossReporter(app.loss_watch, metrics, kafka_side).hole_below_log_start,
    )
    routes = load_routes(settings, os.environ)
    route_health = (
        {r.name: RouteHealth(r.name, settings.worker.route_park_after_s) for r in routes.routes}
        if routes.from_file
        else {}
    )
    side = AgentSide(settings, metrics, health, drain, progress, guard, app.acknowledge, routes, route_health)
    forwarding = ForwardingAgent(side, topics.source_topic, "forward", wait_until_due=False, source="stream")
    retrying = ForwardingAgent(side, topics.retry_topic, "retry", wait_until_due=True, source="retry")

    @app.agent(app.topic(topics.source_topic, value_type=bytes, key_type=bytes), concurrency=1)
    async def forward(stream: Any) -> None:
        settle_heap()  # once per process, when the main agent starts
        await forwarding.consume(stream)

    @app.agent(app.topic(topics.retry_topic, value_type=bytes, key_type=bytes), concurrency=1)
    async def retry(stream: Any) -> None:
        await retrying.consume(stream)

    watchdog: Watchdog | None = None

    @app.timer(interval=WATCHDOG_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def look_at_self() -> None:
        nonlocal watchdog
        if watchdog is None:  # the consumer exists once the app runs
            consumer: Any = app.consumer
            # faust's own record of the group's committed offsets (its version is pinned; see fastpath).
            committed = consumer._committed_offset
            watchdog = Watchdog(
                consumer,
                committed,
                app.loss_watch,
                progress,
                metrics,
                health,
                kafka_side,
                app.pulls,
                commits=app.commit_states,
                reread=app.reread_unseen,
            )
        health.stopping = drain.requested.is_set()
        await watchdog.tick()
        await look_at_routes(settings, route_health, metrics, health)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        metrics.rebalances.inc()
        progress.assigned((tp.topic, tp.partition) for tp in assigned)

    serve_health(app, health, metrics.render)
    return app


async def look_at_routes(
    settings: WorkerSettings, route_health: dict[str, RouteHealth], metrics: Metrics, health: Health
) -> None:
    """A draining route flows again once the retry topic is read to its end (nothing parked is left for its new
    events to overtake); the gauge and readiness say which routes are parked."""
    if any(h.state == "draining" for h in route_health.values()):
        marks = {name: route.stillness() for name, route in route_health.items()}
        try:
            ends, committed = await partition_offsets(
                client_options(settings), settings.topics.retry_topic, settings.topics.group_id
            )
        except Exception as exc:  # asked again at the next tick
            log.info("could not read the retry topic's offsets", extra={"fields": {"error": repr(exc)}})
        else:
            if all(committed.get(partition, 0) >= end for partition, end in ends.items()):
                for name, route in route_health.items():
                    route.drained(marks[name])
    for name, route in route_health.items():
        metrics.route_parked.labels(name).set(1 if route.parked else 0)
    health.parked_routes = sorted(name for name, route in route_health.items() if route.parked)


class ForwarderWorker(faust.Worker):
    """SIGTERM/SIGINT: stop taking batches, give the in-flight one ``deadline_s`` to finish, then stop."""

    def __init__(self, app: faust.App, drain: Drain, deadline_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._drain = drain
        self._deadline_s = deadline_s
        self._draining = False

    def _on_sigterm(self) -> None:
        self._begin_drain(signal.SIGTERM)

    def _on_sigint(self) -> None:
        self._begin_drain(signal.SIGINT)

    def _begin_drain(self, sig: signal.Signals) -> None:
        if self._draining:
            return
        self._draining = True
        self.add_future(self._drain_then_stop(sig))

    async def _drain_then_stop(self, sig: signal.Signals) -> None:
        drain = self._drain
        drain.requested.set()
        started = time.monotonic()
        try:
            await asyncio.wait_for(drain.idle.wait(), timeout=self._deadline_s)
            outcome = "finished"
        except TimeoutError:
            outcome = "abandoned (it will be replayed after restart)"
        log.info(
            f"shutdown: in-flight batch {outcome}",
            extra={"fields": {"signal": sig.name, "waited_s": round(time.monotonic() - started, 3)}},
        )
        self._schedule_shutdown(sig)


def run_worker(settings: WorkerSettings) -> None:
    from forwarder.logs import logging_config

    drain = Drain()
    app = create_app(settings, drain)
    worker = ForwarderWorker(
        app,
        drain,
        settings.worker.shutdown_deadline_s,
        loglevel=settings.worker.log_level,
        logging_config=logging_config(settings.worker.log_level),
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
