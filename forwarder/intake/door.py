"""The one request pipeline of every HTTP route that stores into Kafka: credentials, Content-Type and size are
checked, the body read, the route's handler stores it, and the answer and its reason are counted.

2xx only after Kafka acknowledged (the sender drops what is refused after its retries), 503 when Kafka cannot take
it (so the sender retries), 4xx for what retrying cannot fix, never 500 for input.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from forwarder.intake.auth import Credentials
from forwarder.intake.sink import KAFKA_FAILURES, KafkaSink

log = logging.getLogger("forwarder.ingest")


class Refused(Exception):
    """A route's answer for input it will not store: the status, the counted reason, the one-line error; and
    what the log line says of it (``note``), besides the status, the reason and the sender's request id."""

    def __init__(self, status: int, reason: str, error: str, note: str = "refused a request") -> None:
        super().__init__(error)
        self.status = status
        self.reason = reason
        self.note = note


class IntakeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ingest_requests_total", "Requests by HTTP status.", ["status"], registry=self.registry)
        self.latency = Histogram("ingest_request_seconds", "Time to answer a POST.", registry=self.registry)
        self.refused = Counter(
            "forwarder_ingest_refused",
            "Requests refused, by reason: unauthorized (401), content_type (415), too_large (413), read_timeout "
            "(408), invalid_json and not_streams (400, each also dead-lettered), invalid_webhook (400), "
            "kafka_unavailable (503).",
            ["reason"],
            registry=self.registry,
        )


@dataclass(frozen=True)
class Door:
    """What a route lets in: who may post, and how large a body may be."""

    credentials: Credentials
    max_body_bytes: int
    read_timeout_s: float = 30.0

    async def read(self, request: Request) -> bytes:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                return await self._read(request)
        except TimeoutError:
            raise Refused(408, "read_timeout", f"the body did not arrive within {self.read_timeout_s:g} s") from None

    async def _read(self, request: Request) -> bytes:
        if self.credentials.required and not self.credentials.allows(request.headers):
            raise Refused(401, "unauthorized", "missing or wrong credentials")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise Refused(415, "content_type", "Content-Type must be application/json")
        too_large = Refused(413, "too_large", f"the body is over {self.max_body_bytes} bytes")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                raise too_large
        return bytes(body)


# A route's work once the door let the body in: store it, return the 200 answer's body (or raise Refused).
Handler = Callable[[bytes, Request], Awaitable[dict[str, Any]]]


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def intake_route(path: str, door: Door, handle: Handler, sink: KafkaSink, metrics: IntakeMetrics) -> Route:
    def answer(status: int, body: dict[str, Any], started: float) -> Response:
        metrics.requests.labels(status=str(status)).inc()
        metrics.latency.observe(time.perf_counter() - started)
        return _json(status, body)

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        body = b""
        try:
            body = await door.read(request)
            return answer(200, await handle(body, request), started)
        except Refused as refused:
            metrics.refused.labels(refused.reason).inc()
            # One line per refused request, never its body: MoEngage drops a batch after three refusals.
            fields = {"path": path, "status": refused.status, "reason": refused.reason}
            fields |= {"moe_request_id": request.headers.get("x-moe-request-id", "")[:200], "bytes": len(body)}
            log.warning(refused.note, extra={"fields": fields})
            return answer(refused.status, {"error": str(refused)}, started)
        except KAFKA_FAILURES as exc:
            sink.last_error = type(exc).__name__
            log.warning(
                "kafka did not take the body; answering 503 so that the sender retries",
                extra={"fields": {"path": path, "error": type(exc).__name__}},
            )
            metrics.refused.labels("kafka_unavailable").inc()
            return answer(503, {"error": "the event store is unavailable; retry later"}, started)

    return Route(path, endpoint, methods=["POST"])


def intake_app(sink: KafkaSink, metrics: IntakeMetrics, routes: Sequence[BaseRoute]) -> Starlette:
    """The routes, plus ``/healthz``, ``/readyz`` (503 while Kafka is unreachable) and ``/metrics``."""

    async def liveness(request: Request) -> Response:
        return _json(200, {"status": "alive"})

    async def readiness(request: Request) -> Response:
        try:
            await sink.reachable()
        except KAFKA_FAILURES as exc:
            return _json(503, {"status": "kafka unavailable", "error": type(exc).__name__})
        return _json(200, {"status": "ready"})

    async def metrics_page(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sink.close()

    app = Starlette(
        routes=[
            *routes,
            Route("/healthz", liveness, methods=["GET"]),
            Route("/readyz", readiness, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    return app
