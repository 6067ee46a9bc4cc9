"""The composition root: the one place that builds the processing stack from settings.

Kafka producer (dead letters, parked events, the ledger) -> Amplitude client -> delivery policy -> lanes ->
``BatchProcessor``. The worker, ``replay``, ``replay-dlq`` and ``backfill`` all get theirs here, so a change to
how the stack is built is made once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from forwarder.amplitude.client import AmplitudeClient
from forwarder.amplitude.delivery import Deliverer
from forwarder.amplitude.lanes import Lanes
from forwarder.amplitude.limits import LIMITS
from forwarder.amplitude.route_health import RouteHealth
from forwarder.core.property_memory import PropertyMemory
from forwarder.kafka.dead_letters import DeadLetterSink, DeadLetterWriter, FileDeadLetterWriter
from forwarder.kafka.ledger import LedgerWriter
from forwarder.kafka.producer import started_producer
from forwarder.processing import BatchProcessor, RouteStack, Routing
from forwarder.routes import Route, RouteTable
from forwarder.settings import ForwarderSettings, SettingsError
from forwarder.worker.metrics import Metrics


@dataclass(frozen=True)
class Stack:
    processor: BatchProcessor
    # Where dead letters go, for summaries: "the topic NAME" or a file path.
    dead_letters_at: str


@contextlib.asynccontextmanager
async def processing_stack(
    settings: ForwarderSettings,
    routes: RouteTable,
    *,
    api: str | None = None,
    metrics: Metrics | None = None,
    on_answer: Callable[[str, float], None] | None = None,
    park_throttled: bool = False,
    dead_letters_file: Path | None = None,
    source: str = "stream",
    healths: dict[str, RouteHealth] | None = None,
    park_routes: bool = False,
) -> AsyncIterator[Stack]:
    """``routes``: each route's project and rules (``load_routes``). ``park_throttled``: the worker's way,
    throttled events wait in the retry topic instead of in place (a replay or backfill has no live traffic to hold
    back). ``dead_letters_file``: where dead letters go when no Kafka is configured (``backfill``; then there is no
    ledger either). ``on_answer(status, seconds)``: each Amplitude answer. ``source``: what the ledger calls these
    runs (``stream``, ``retry``, ``replay`` ...). ``healths``: each route's, shared by a worker's agents (with a
    routes file); ``park_routes``: a route failing longer than ``FORWARDER_ROUTE_PARK_AFTER_S`` is parked (the
    source agent)."""
    for route in routes.routes:
        if route.amplitude.api_key is None:
            raise SettingsError("invalid settings:\n  AMPLITUDE_API_KEY: is required but not set")
    producer: AIOKafkaProducer | None = None
    if settings.kafka.bootstrap_servers:
        producer = await started_producer(settings, settings.topics.dlq_max_value_bytes)
    stacks: dict[str, RouteStack] = {}
    closing: list[Callable[[], Awaitable[None]]] = []
    try:
        dead_letters: DeadLetterSink
        if producer is not None:
            dead_letters = DeadLetterWriter(producer, settings.topics.dlq_topic, settings.topics.dlq_max_value_bytes)
            where = f"the topic {settings.topics.dlq_topic}"
        elif dead_letters_file is not None:
            dead_letters = FileDeadLetterWriter(str(dead_letters_file))
            where = str(dead_letters_file)
        else:
            raise SettingsError("invalid settings:\n  KAFKA_BOOTSTRAP_SERVERS: is required but not set")
        parked = None
        if park_throttled:
            if producer is None:
                raise SettingsError("invalid settings:\n  KAFKA_BOOTSTRAP_SERVERS: is required but not set")
            parked = DeadLetterWriter(producer, settings.topics.retry_topic, settings.topics.dlq_max_value_bytes)
        for route in routes.routes:
            health = (healths or {}).get(route.name) if routes.from_file else None
            stacks[route.name] = _route_stack(
                settings, route, api, on_answer, park_throttled, health if park_routes else None, health, closing
            )
        first = stacks[routes.routes[0].name]
        processor = BatchProcessor(
            first.rules,
            first.deliverer,
            dead_letters,
            metrics or Metrics(),
            retries=parked,
            ledger=LedgerWriter(producer, settings.topics.ledger_topic) if producer is not None else None,
            source=source,
            routing=Routing(routes if routes.from_file or routes.limit else None, stacks, park=park_routes),
        )
        yield Stack(processor, where)
    finally:
        for close in reversed(closing):
            await close()
        if producer is not None:
            await producer.stop()


def _route_stack(
    settings: ForwarderSettings,
    route: Route,
    api: str | None,
    on_answer: Callable[[str, float], None] | None,
    park_throttled: bool,
    parks: RouteHealth | None,
    health: RouteHealth | None,
    closing: list[Callable[[], Awaitable[None]]],
) -> RouteStack:
    """One route's client, delivery policy, lanes and user-property memory; what must be closed goes on
    ``closing``. ``parks``: the route's health when this stack parks it (the source agent's); the retry agent's
    tries in place, so what was parked keeps its order."""
    amplitude = route.amplitude
    api = api or amplitude.api
    assert amplitude.api_key is not None  # checked by processing_stack
    client = AmplitudeClient(
        amplitude.endpoint(api),
        amplitude.api_key,
        timeout_s=amplitude.timeout_s,
        min_id_length=amplitude.min_id_length if amplitude.min_id_length < 5 else None,
        observer=on_answer,
    )
    closing.append(client.aclose)
    deliverer = Deliverer(
        client, LIMITS[api], asyncio.sleep, defer_throttled=park_throttled, health=health, park=parks is not None
    )
    lanes = Lanes(deliverer, settings.worker.max_in_flight, LIMITS[api].max_events)
    closing.append(lanes.aclose)
    memory = PropertyMemory(settings.properties.user_properties_cache) if route.rules.user_properties else None
    return RouteStack(route.name, route.rules, lanes, memory, health)
