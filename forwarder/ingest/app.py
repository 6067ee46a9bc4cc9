"""The ingestion HTTP service (Starlette under uvicorn): MoEngage Streams' route, through the shared door.

MoEngage retries a failed batch three times (30, 60, 120 s) and then the data is gone, so this answers 2xx only
after Kafka acknowledged every record of the batch (``forwarder.intake``). Every JSON object is stored and the
worker judges each event; a body that is not one gets 400 and its bytes go to the dead-letter topic. Other routes
(the cohort webhooks) are mounted beside it by the command line; this module does not know them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute

from forwarder.ingest.records import NotStreamsRequest, parse_batch
from forwarder.intake.auth import Credentials
from forwarder.intake.door import Door, IntakeMetrics, Refused, intake_app, intake_route
from forwarder.intake.sink import KafkaSink
from forwarder.kafka.dead_letters import ROUTE_HEADER, DeadLetterRecord, SourceRef

log = logging.getLogger("forwarder.ingest")


@dataclass(frozen=True)
class RefusedBodies:
    """Where a body that is not a JSON object is kept (the dead-letter topic), and how much of it."""

    topic: str
    max_value_bytes: int = 1_000_000


class Mount(Protocol):
    """Another route served beside the Streams route (``forwarder.cohorts.webhook.CohortRoute``)."""

    def route(self, sink: KafkaSink, metrics: IntakeMetrics) -> BaseRoute: ...


class StreamsRoute:
    """One Streams body: stored as records of its events (or whole), after Kafka acknowledged each."""

    def __init__(
        self,
        sink: KafkaSink,
        metrics: IntakeMetrics,
        refused: RefusedBodies | None,
        routes: frozenset[str] = frozenset(),
    ) -> None:
        """``routes``: the names ``PATH/{route}`` accepts (FORWARDER_ROUTES_FILE)."""
        self._sink = sink
        self._refused = refused
        self._routes = routes
        self.events = Counter("ingest_events_total", "Events stored in Kafka.", registry=metrics.registry)
        self.repaired = Counter(
            "forwarder_events_repaired",
            "Events kept after repairing their input (invalid_utf8: bytes that are not UTF-8 became U+FFFD).",
            ["reason"],
            registry=metrics.registry,
        )

    async def __call__(self, body: bytes, request: Request) -> dict[str, Any]:
        moe_request_id = request.headers.get("x-moe-request-id", "")
        route = request.path_params.get("route")
        if route is not None and route not in self._routes:
            raise Refused(404, "unknown_route", f"no route named {route[:64]!r}", "refused a body for an unknown route")
        try:
            batch = parse_batch(body)
        except NotStreamsRequest as exc:
            await self._keep_refused(body, exc, moe_request_id)  # a Kafka failure here answers 503
            note = "refused a body that is not a JSON object; its bytes are in the dead-letter topic"
            raise Refused(400, exc.reason, str(exc), note) from None
        if batch.repaired:
            self.repaired.labels("invalid_utf8").inc(len(batch.events))
            log.warning(
                "repaired a batch: bytes that are not UTF-8 were replaced with U+FFFD and the events kept",
                extra={
                    "fields": {
                        "moe_request_id": moe_request_id or batch.envelope.get("moe_request_id"),
                        "events": len(batch.events),
                    }
                },
            )
        headers = [("ingested_at", str(int(time.time() * 1000)).encode())]
        if moe_request_id:
            headers.append(("moe_request_id", moe_request_id.encode()[:200]))
        if route is not None:  # the worker takes it to this route, whatever the body's app_name
            headers.append((ROUTE_HEADER, route.encode()))
        events = await self._sink.store(batch, headers)
        self.events.inc(events)
        return {"status": "stored", "events": events}

    async def _keep_refused(self, body: bytes, error: NotStreamsRequest, request_id: str) -> None:
        """A body answered 400 leaves a trace (MoEngage drops it after three retries): its bytes, up to the
        dead-letter topic's limit, and why."""
        if self._refused is None:
            return
        kept = body[: self._refused.max_value_bytes]
        detail = str(error) + ("" if len(kept) == len(body) else f"; the first {len(kept)} bytes are kept")
        letter = DeadLetterRecord(kept, SourceRef(self._sink.topic, -1, -1, None), error.reason, detail=detail)
        headers = [
            *letter.headers(),
            ("dlq.moe_request_id", request_id.encode()[:200]),
            ("dlq.received_at", str(int(time.time() * 1000)).encode()),
            ("dlq.body_bytes", str(len(body)).encode()),
        ]
        await self._sink.store_record(self._refused.topic, b"", kept, headers)


def create_ingest_app(
    sink: KafkaSink,
    credentials: Credentials,
    path: str = "/moengage/streams",
    max_body_bytes: int = 1_000_000,
    refused: RefusedBodies | None = None,
    mounts: Sequence[Mount] = (),
    read_timeout_s: float = 30.0,
    routes: frozenset[str] = frozenset(),
) -> Starlette:
    """``refused``: where bodies answered 400 are kept; ``mounts``: other routes served beside this one;
    ``routes``: the route names ``PATH/{route}`` takes (a body sent there goes to that route)."""
    metrics = IntakeMetrics()
    door = Door(credentials, max_body_bytes, read_timeout_s)
    handler = StreamsRoute(sink, metrics, refused, routes)
    streams = intake_route(path, door, handler, sink, metrics)
    routed = intake_route(path.rstrip("/") + "/{route}", door, handler, sink, metrics)
    return intake_app(sink, metrics, [*(mount.route(sink, metrics) for mount in mounts), streams, routed])
