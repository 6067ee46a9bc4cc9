"""The one request pipeline both halves receive through, without a broker: who may post, what, how large; how a
route's refusal and Kafka's failure are answered and counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaTimeoutError
from starlette.requests import Request

from forwarder.intake.auth import Credentials
from forwarder.intake.door import Door, IntakeMetrics, Refused, intake_app, intake_route
from forwarder.intake.sink import KafkaSink

JSON = {"content-type": "application/json"}
BASIC = {"authorization": "Basic dTpw"}  # u:p


class Route:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.fail: Exception | None = None

    async def __call__(self, body: bytes, request: Request) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        self.bodies.append(body)
        return {"status": "stored"}


class Client:
    """POSTs to the app in process (no server, no broker)."""

    def __init__(self, app: Any) -> None:
        self._transport = httpx.ASGITransport(app=app)

    async def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(transport=self._transport, base_url="http://door.local") as http:
            return await http.post(path, content=content, headers=headers)


@pytest.fixture
def door() -> tuple[Client, Route, IntakeMetrics, KafkaSink]:
    sink = KafkaSink("127.0.0.1:1", "unused", 1.0, max_request_bytes=1000)
    metrics, route = IntakeMetrics(), Route()
    routes = [intake_route("/in", Door(Credentials.parse("u:p", None), 100), route, sink, metrics)]
    return Client(intake_app(sink, metrics, routes)), route, metrics, sink


def refused(metrics: IntakeMetrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value("forwarder_ingest_refused_total", {"reason": reason})


async def test_a_body_let_in_reaches_the_route_whole(door) -> None:
    client, route, _, _ = door
    answer = await client.post("/in", content=b'{"a": 1}', headers={**JSON, **BASIC})
    assert (answer.status_code, answer.json()) == (200, {"status": "stored"})
    assert route.bodies == [b'{"a": 1}']


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        (JSON, b"{}", 401, "unauthorized"),
        ({**BASIC, "content-type": "text/plain"}, b"{}", 415, "content_type"),
        ({**JSON, **BASIC}, b"{" + b" " * 200 + b"}", 413, "too_large"),
    ],
)
async def test_what_the_door_refuses_is_answered_counted_and_logged_by_reason(
    door, headers, body, status, reason, caplog
) -> None:
    client, route, metrics, _ = door
    with caplog.at_level("WARNING", logger="forwarder.ingest"):
        answer = await client.post("/in", content=body, headers={**headers, "X-MOE-Request-Id": "req-1"})
    assert answer.status_code == status
    assert "error" in answer.json()
    assert refused(metrics, reason) == 1
    assert route.bodies == []
    [line] = [r for r in caplog.records if r.getMessage() == "refused a request"]
    fields = line.fields
    assert (fields["status"], fields["reason"], fields["moe_request_id"]) == (status, reason, "req-1")
    assert body.decode() not in line.getMessage() + str(fields)  # never the body


async def test_a_routes_refusal_and_kafkas_failure_are_answered_400_and_503(door) -> None:
    client, route, metrics, sink = door
    route.fail = Refused(400, "invalid_webhook", "not a cohort change")
    answer = await client.post("/in", content=b"{}", headers={**JSON, **BASIC})
    assert (answer.status_code, answer.json()) == (400, {"error": "not a cohort change"})
    route.fail = KafkaTimeoutError()
    answer = await client.post("/in", content=b"{}", headers={**JSON, **BASIC})
    assert answer.status_code == 503  # the sender retries: nothing was stored
    assert (refused(metrics, "invalid_webhook"), refused(metrics, "kafka_unavailable")) == (1, 1)
    assert sink.last_error == "KafkaTimeoutError"


async def test_a_body_that_does_not_arrive_in_time_is_answered_408_and_counted() -> None:
    """A slow sender cannot hold a connection, and its half-read body, for longer than the read timeout."""
    sink = KafkaSink("127.0.0.1:1", "unused", 1.0, max_request_bytes=1000)
    metrics, route = IntakeMetrics(), Route()
    door = Door(Credentials.parse("u:p", None), 100, read_timeout_s=0.2)
    client = Client(intake_app(sink, metrics, [intake_route("/in", door, route, sink, metrics)]))

    async def trickle() -> AsyncIterator[bytes]:
        yield b"{"
        await asyncio.sleep(1.0)
        yield b"}"

    async with httpx.AsyncClient(transport=client._transport, base_url="http://door.local") as http:
        answer = await http.post("/in", content=trickle(), headers={**JSON, **BASIC})
    assert answer.status_code == 408
    assert refused(metrics, "read_timeout") == 1
    assert route.bodies == []
