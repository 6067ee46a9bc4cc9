"""``ingest``'s cohort webhook route: off without its header credential, 401/415/413/400 before Kafka, and 200
only once the body is stored in the cohorts topic, keyed by cohort id."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from forwarder.cohorts.records import KIND_HEADER, WEBHOOK
from forwarder.cohorts.webhook import CohortRoute
from forwarder.ingest.app import create_ingest_app
from forwarder.intake.auth import Credentials
from forwarder.intake.sink import KafkaSink
from forwarder.kafka.admin import create_topics
from tests.kafka_helpers import read_all

SECRET = ("X-Cohort-Secret", "hook-s3cret")
BODY = orjson.dumps(
    {
        "cohort_id": "abc123",
        "cohort_name": "Buyers",
        "in_cohort": True,
        "computed_time": "2026-11-29T00:00:00Z",
        "message_id": "m-1::enter::0",
        "users": [{"user_id": "customer-1", "user_properties": {"moe_anonymous_id": "anon-1"}}],
    }
)


class Ingest:
    """The ingest app in process; its Kafka producer is closed on exit (ASGITransport runs no lifespan)."""

    def __init__(self, servers: str, topic: str, route: bool = True) -> None:
        self.sink = KafkaSink(servers, "unused", 5.0, max_request_bytes=2_000_000)
        cohorts = CohortRoute("/amplitude/cohorts", Credentials.parse(None, ": ".join(SECRET)), topic, 10_000)
        built = create_ingest_app(self.sink, Credentials(), mounts=[cohorts] if route else [])
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=built), base_url="http://ingest.local")

    async def __aenter__(self) -> httpx.AsyncClient:
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self.sink.close()


def app(servers: str, topic: str, route: bool = True) -> Ingest:
    return Ingest(servers, topic, route)


async def post(client: httpx.AsyncClient, body: bytes, **headers: str) -> httpx.Response:
    merged = {"Content-Type": "application/json", SECRET[0]: SECRET[1], **headers}
    return await client.post("/amplitude/cohorts", content=body, headers=merged)


async def test_input_that_cannot_be_stored_is_refused_before_kafka() -> None:
    async with app("127.0.0.1:1", "cohorts") as client:  # no broker there: none of these may reach it
        assert (await post(client, BODY, **{SECRET[0]: "wrong"})).status_code == 401
        assert (await post(client, BODY, **{"Content-Type": "text/plain"})).status_code == 415
        assert (await post(client, b"{" * 20_000)).status_code == 413
        bad = await post(client, b'{"cohort_id": "c", "in_cohort": "yes", "users": []}')
        assert bad.status_code == 400
        assert "in_cohort" in bad.json()["error"]
        assert (await post(client, b"\xff\xfe not json")).status_code == 400


async def test_the_route_is_off_without_its_credential() -> None:
    async with app("127.0.0.1:1", "cohorts", route=False) as client:
        assert (await post(client, BODY)).status_code == 404


@pytest.mark.kafka
def test_a_change_is_answered_200_once_stored_keyed_by_cohort(kafka: str, topic_names) -> None:
    topic = topic_names("cohorts")
    asyncio.run(create_topics(kafka, {topic: 3}))

    async def send_twice() -> list[httpx.Response]:
        async with app(kafka, topic) as client:
            return [await post(client, BODY), await post(client, BODY)]

    answers = asyncio.run(send_twice())
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == {"status": "stored", "users": 1}
    records = asyncio.run(read_all(kafka, topic, expected=2))
    assert [r.value for r in records] == [BODY, BODY]  # stored as received; the worker makes the repeat harmless
    assert {r.key for r in records} == {b"abc123"}
    assert len({r.partition for r in records}) == 1
    assert all(dict(r.headers)[KIND_HEADER] == WEBHOOK for r in records)
