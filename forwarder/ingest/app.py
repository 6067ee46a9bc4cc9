"""The ingestion HTTP service (Starlette under uvicorn).

MoEngage retries a failed batch three times (30, 60, 120 s) and then the data is gone, so this answers
2xx only after Kafka acknowledged every record of the batch (acks=all, idempotent producer), 503 when Kafka
cannot take it (so MoEngage retries), and 4xx for what retrying cannot fix. Never 500 for input. Every JSON object
is stored and the worker judges each event; a body that is not one gets 400 and its bytes go to the dead-letter
topic. This route is the only place that enforces authentication, Content-Type, size and Kafka's acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forwarder.cohorts.members import PayloadError, parse_webhook
from forwarder.cohorts.records import KIND_HEADER, WEBHOOK
from forwarder.ingest.auth import Credentials
from forwarder.ingest.records import Batch, NotStreamsRequest, parse_batch
from forwarder.kafka.admin import Connection, options_of
from forwarder.kafka.dead_letters import DeadLetterRecord, SourceRef

log = logging.getLogger("forwarder.ingest")


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class KafkaSink:
    """An idempotent producer that is (re)started on demand, so the service starts while Kafka is down."""

    def __init__(self, connection: Connection, topic: str, timeout_s: float, max_request_bytes: int) -> None:
        self._options = options_of(connection)
        self.topic = topic
        self.timeout_s = timeout_s
        self._max_request_bytes = max_request_bytes
        self._producer: AIOKafkaProducer | None = None
        # Kafka's default (murmur2) partitioner: the partition a keyed record would get.
        self._partitioner = DefaultPartitioner()
        self._lock = asyncio.Lock()
        self.last_ok = 0.0
        self.last_error = ""

    async def _ensure(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **self._options,
                    acks="all",
                    enable_idempotence=True,
                    max_request_size=self._max_request_bytes,
                    request_timeout_ms=int(self.timeout_s * 1000),
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def store(self, batch: Batch, headers: list[tuple[str, bytes]]) -> int:
        """Returns the number of events once Kafka acknowledged every record; raises otherwise."""

        # Each record carries the time it was received, never the events' own times: Kafka's retention deletes by
        # record timestamp, so a batch of old events (a backfill, a late retry) stamped with their event times
        # could be deleted before the worker reads it.
        received_ms = int(time.time() * 1000)

        async def send_all() -> int:
            producer = await self._ensure()
            partitions = sorted(await producer.partitions_for(self.topic))
            records = batch.records(lambda key: self._partitioner(key, partitions, partitions))
            futures = [
                await producer.send(
                    self.topic,
                    r.value,
                    key=r.key,
                    partition=r.partition,
                    headers=headers,
                    timestamp_ms=received_ms,
                )
                for r in records
            ]
            await asyncio.gather(*futures)
            return sum(r.events for r in records)

        events = await asyncio.wait_for(send_all(), timeout=self.timeout_s)
        self.last_ok = time.time()
        return events

    async def store_record(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """One record, returned once Kafka acknowledged it; raises otherwise."""

        async def send() -> None:
            producer = await self._ensure()
            await (await producer.send(topic, value, key=key, headers=headers))

        await asyncio.wait_for(send(), timeout=self.timeout_s)
        self.last_ok = time.time()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ingest_requests_total", "Requests by HTTP status.", ["status"], registry=self.registry)
        self.events = Counter("ingest_events_total", "Events stored in Kafka.", registry=self.registry)
        self.latency = Histogram("ingest_request_seconds", "Time to answer a POST.", registry=self.registry)
        self.cohort_users = Counter(
            "ingest_cohort_users_total", "Users of cohort webhook changes stored in Kafka.", registry=self.registry
        )
        self.refused = Counter(
            "forwarder_ingest_refused",
            "Requests refused, by reason: unauthorized (401), content_type (415), too_large (413), invalid_json and "
            "not_streams (400, each also dead-lettered), invalid_webhook (400), kafka_unavailable (503).",
            ["reason"],
            registry=self.registry,
        )
        self.repaired = Counter(
            "forwarder_events_repaired",
            "Events kept after repairing their input (invalid_utf8: bytes that are not UTF-8 became U+FFFD).",
            ["reason"],
            registry=self.registry,
        )


@dataclass(frozen=True)
class CohortRoute:
    """Amplitude's Cohort Webhooks destination: ``path``, its header credential, the cohorts topic."""

    path: str
    credentials: Credentials
    topic: str
    max_body_bytes: int = 5_000_000


@dataclass(frozen=True)
class RefusedBodies:
    """Where a body that is not a JSON object is kept (the dead-letter topic), and how much of it."""

    topic: str
    max_value_bytes: int = 1_000_000


def create_ingest_app(
    sink: KafkaSink,
    credentials: Credentials,
    path: str = "/moengage/streams",
    max_body_bytes: int = 1_000_000,
    cohorts: CohortRoute | None = None,
    refused: RefusedBodies | None = None,
) -> Starlette:
    """``refused``: where bodies answered 400 are kept (MoEngage drops them after three retries)."""
    metrics = IngestMetrics()

    def answer(status: int, body: dict[str, Any], started: float) -> Response:
        metrics.requests.labels(status=str(status)).inc()
        metrics.latency.observe(time.perf_counter() - started)
        return _json(status, body)

    def refuse(status: int, reason: str, error: str, started: float) -> Response:
        metrics.refused.labels(reason).inc()
        return answer(status, {"error": error}, started)

    async def keep_refused(body: bytes, error: NotStreamsRequest, request_id: str) -> None:
        """A body answered 400 leaves a trace: its bytes (up to the dead-letter topic's limit) and why."""
        assert refused is not None
        kept = body[: refused.max_value_bytes]
        detail = str(error) + ("" if len(kept) == len(body) else f"; the first {len(kept)} bytes are kept")
        letter = DeadLetterRecord(kept, SourceRef(sink.topic, -1, -1, None), error.reason, detail=detail)
        headers = [
            *letter.headers(),
            ("dlq.moe_request_id", request_id.encode()[:200]),
            ("dlq.received_at", str(int(time.time() * 1000)).encode()),
            ("dlq.body_bytes", str(len(body)).encode()),
        ]
        await sink.store_record(refused.topic, b"", kept, headers)

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        if credentials.required and not credentials.allows(request.headers):
            return refuse(401, "unauthorized", "missing or wrong credentials", started)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return refuse(415, "content_type", "Content-Type must be application/json", started)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return refuse(413, "too_large", f"the body is over {max_body_bytes} bytes", started)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return refuse(413, "too_large", f"the body is over {max_body_bytes} bytes", started)
        moe_request_id = request.headers.get("x-moe-request-id", "")
        try:
            batch = parse_batch(bytes(body))
        except NotStreamsRequest as exc:
            if refused is not None:
                try:
                    await keep_refused(bytes(body), exc, moe_request_id)
                except (KafkaError, TimeoutError, OSError) as error:
                    sink.last_error = type(error).__name__
                    log.warning(
                        "kafka did not take a refused body; answering 503 so that MoEngage retries",
                        extra={"fields": {"error": type(error).__name__, "moe_request_id": moe_request_id}},
                    )
                    return refuse(503, "kafka_unavailable", "the event store is unavailable; retry later", started)
            log.warning(
                "refused a body that is not a JSON object; its bytes are in the dead-letter topic",
                extra={"fields": {"reason": exc.reason, "moe_request_id": moe_request_id, "bytes": len(body)}},
            )
            return refuse(400, exc.reason, str(exc), started)
        if batch.repaired:
            metrics.repaired.labels("invalid_utf8").inc(len(batch.events))
            body_request_id = batch.envelope.get("moe_request_id")
            log.warning(
                "repaired a batch: bytes that are not UTF-8 were replaced with U+FFFD and the events kept",
                extra={"fields": {"moe_request_id": moe_request_id or body_request_id, "events": len(batch.events)}},
            )
        headers = [("ingested_at", str(int(time.time() * 1000)).encode())]
        if moe_request_id:
            headers.append(("moe_request_id", moe_request_id.encode()[:200]))
        try:
            events = await sink.store(batch, headers)
        except (KafkaError, TimeoutError, OSError) as exc:
            sink.last_error = type(exc).__name__
            log.warning("kafka did not take the batch; answering 503", extra={"fields": {"error": type(exc).__name__}})
            return refuse(503, "kafka_unavailable", "the event store is unavailable; retry later", started)
        metrics.events.inc(events)
        return answer(200, {"status": "stored", "events": events}, started)

    async def receive_cohort_change(request: Request) -> Response:
        """Stored as received, keyed by cohort id (one cohort's changes keep their order); a repeated
        ``message_id`` is stored again and changes nothing downstream (the worker's state is per member)."""
        assert cohorts is not None
        started = time.perf_counter()
        if not cohorts.credentials.allows(request.headers):
            return refuse(401, "unauthorized", "missing or wrong credentials", started)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return refuse(415, "content_type", "Content-Type must be application/json", started)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cohorts.max_body_bytes:
                return refuse(413, "too_large", f"the body is over {cohorts.max_body_bytes} bytes", started)
        try:
            change = parse_webhook(bytes(body))
        except PayloadError as exc:
            return refuse(400, "invalid_webhook", str(exc), started)
        headers = [(KIND_HEADER, WEBHOOK), ("ingested_at", str(int(time.time() * 1000)).encode())]
        try:
            await sink.store_record(cohorts.topic, change.cohort_id.encode(), bytes(body), headers)
        except (KafkaError, TimeoutError, OSError) as exc:
            sink.last_error = type(exc).__name__
            log.warning(
                "kafka did not take the cohort change; answering 503", extra={"fields": {"error": type(exc).__name__}}
            )
            return refuse(503, "kafka_unavailable", "the event store is unavailable; retry later", started)
        metrics.cohort_users.inc(len(change.users))
        return answer(200, {"status": "stored", "users": len(change.users)}, started)

    async def liveness(request: Request) -> Response:
        return _json(200, {"status": "alive"})

    async def readiness(request: Request) -> Response:
        try:
            await asyncio.wait_for(sink._ensure(), timeout=sink.timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:
            return _json(503, {"status": "kafka unavailable", "error": type(exc).__name__})
        return _json(200, {"status": "ready"})

    async def metrics_page(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sink.close()

    cohort_routes = [Route(cohorts.path, receive_cohort_change, methods=["POST"])] if cohorts is not None else []
    app = Starlette(
        routes=[
            *cohort_routes,
            Route(path, receive, methods=["POST"]),
            Route("/healthz", liveness, methods=["GET"]),
            Route("/readyz", readiness, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    return app
