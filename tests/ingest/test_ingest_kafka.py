"""The ingestion service on a real broker: 2xx only once stored, 503 when Kafka cannot take it."""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.amplitude import ServiceThread
from devkit.kafka import LocalKafka
from devkit.observe import scrape_outcomes, wait_until_committed
from devkit.traffic import streams_requests
from forwarder.core.decode import DecodeError, load_json
from forwarder.ingest.app import RefusedBodies, create_ingest_app
from forwarder.intake.auth import Credentials
from forwarder.intake.sink import KafkaSink
from forwarder.kafka.admin import create_topics
from forwarder.kafka.dead_letters import header_map
from tests.ingest.mutations import mutated_body
from tests.kafka_helpers import read_all
from tests.worker.test_worker_delivery import worker_env

pytestmark = pytest.mark.kafka
BASIC = "moengage:s3cret-pass"
AUTH = {"Authorization": "Basic " + base64.b64encode(BASIC.encode()).decode()}


class Ingest:
    def __init__(
        self, servers: str, topic: str, timeout_s: float = 5, header: str | None = None, dlq: str | None = None
    ) -> None:
        self.sink = KafkaSink(servers, topic, timeout_s, max_request_bytes=2_000_000)
        refused = RefusedBodies(dlq) if dlq is not None else None
        self.app = create_ingest_app(
            self.sink, Credentials.parse(BASIC, header), max_body_bytes=1_000_000, refused=refused
        )
        app = self.app
        self.runner = ServiceThread(app)
        self.url = self.runner.start() + "/moengage/streams"

    def ready(self) -> int:
        return httpx.get(self.url.removesuffix("/moengage/streams") + "/readyz", timeout=30).status_code

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        merged = {"Content-Type": "application/json", **AUTH, **(headers or {})}
        return httpx.post(self.url, content=body, headers=merged, timeout=30)


@pytest.fixture
def ingest(kafka: str, topic_names) -> Iterator[tuple[Ingest, str]]:
    topic = topic_names("ingest")
    asyncio.run(create_topics(kafka, {topic: 3, f"{topic}-dlq": 1}))
    service = Ingest(kafka, topic, dlq=f"{topic}-dlq")
    yield service, topic
    service.runner.stop()


def refused_total(service: Ingest, reason: str) -> float:
    value = service.app.state.metrics.registry.get_sample_value("forwarder_ingest_refused_total", {"reason": reason})
    return value or 0.0


def test_a_stored_batch_is_answered_200_and_each_users_events_share_a_partition(kafka, ingest) -> None:
    service, topic = ingest
    body = next(streams_requests(100, seed=21))
    for event in body["events"][:10]:
        event["uid"] = "customer-same-user"  # one user with ten events
    response = service.post(orjson.dumps(body))
    assert response.status_code == 200
    assert response.json() == {"status": "stored", "events": 100}
    records = asyncio.run(read_all(kafka, topic))
    assert len(records) <= 3  # one record per partition, not one per event
    stored = [(r.partition, e) for r in records for e in orjson.loads(r.value)["events"]]
    assert sorted(e["event_uuid"] for _, e in stored) == sorted(e["event_uuid"] for e in body["events"])
    same_user = [(p, e["event_uuid"]) for p, e in stored if e["uid"] == "customer-same-user"]
    assert len({p for p, _ in same_user}) == 1
    assert [u for _, u in same_user] == [e["event_uuid"] for e in body["events"][:10]]


def test_one_byte_that_is_not_utf8_costs_no_batch_it_is_repaired_and_stored(kafka, ingest) -> None:
    """MoEngage drops a batch after three refused retries: a Windows apostrophe must not cost 100 events."""
    service, topic = ingest
    body = next(streams_requests(10, seed=23))
    body["events"][0]["event_attributes"]["campaign_name"] = "O_Brien"
    raw = orjson.dumps(body).replace(b"O_Brien", b"O\x92Brien")
    response = service.post(raw)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "stored", "events": 10}
    records = asyncio.run(read_all(kafka, topic))
    stored = [e for r in records for e in orjson.loads(r.value)["events"]]  # valid UTF-8 now
    assert len(stored) == 10
    assert "O\ufffdBrien" in [e["event_attributes"].get("campaign_name") for e in stored]
    metrics = httpx.get(service.url.removesuffix("/moengage/streams") + "/metrics", timeout=5).text
    assert 'forwarder_events_repaired_total{reason="invalid_utf8"} 10.0' in metrics


def test_records_are_stamped_with_the_time_they_were_received_not_the_events_time(kafka, ingest) -> None:
    """Kafka's retention deletes by record timestamp: old events stamped with their own times would not wait."""
    service, topic = ingest
    body = next(streams_requests(20, seed=22))
    for event in body["events"]:
        event["event_time"] = 1_500_000_000  # 2017
    before_ms = int(time.time() * 1000)
    assert service.post(orjson.dumps(body)).status_code == 200
    after_ms = int(time.time() * 1000)
    records = asyncio.run(read_all(kafka, topic))
    assert records
    assert all(r.timestamp_type == 0 and before_ms <= r.timestamp <= after_ms for r in records)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": ""},
        {"Authorization": "Basic " + base64.b64encode(b"moengage:wrong").decode()},
        {"Authorization": "Bearer s3cret-pass"},
    ],
)
def test_wrong_or_missing_credentials_get_401(ingest, headers: dict[str, str]) -> None:
    service, _ = ingest
    assert service.post(b'{"events": [{"event_code": "SMS_SENT"}]}', headers).status_code == 401


def test_a_static_header_is_required_too_when_configured(kafka, topic_names) -> None:
    topic = topic_names("ingest")
    service = Ingest(kafka, topic, header="X-Api-Key: k-123")
    try:
        body = b'{"events": [{"event_code": "SMS_SENT", "uid": "customer-1"}]}'
        assert service.post(body).status_code == 401
        assert service.post(body, {"X-Api-Key": "k-123"}).status_code == 200
    finally:
        service.runner.stop()


def test_bad_requests_get_clear_4xx_never_5xx_and_each_refusal_is_counted_by_reason(ingest) -> None:
    service, _ = ingest
    assert service.post(b"{nope").status_code == 400
    assert "not valid JSON" in service.post(b"{nope").json()["error"]
    assert service.post(b"[1, 2]").status_code == 400
    assert service.post(b'{"events": []}').status_code == 200  # a JSON object: the worker dead-letters it
    assert service.post(b"x" * 1_000_001).status_code == 413
    assert service.post(b'{"events": [{"event_code": "A"}]}', {"Content-Type": "text/plain"}).status_code == 415
    assert service.post(b"{}", {"Authorization": "Basic bm9ib2R5Ong="}).status_code == 401
    assert {
        reason: refused_total(service, reason)
        for reason in ("invalid_json", "not_streams", "too_large", "content_type", "unauthorized")
    } == {"invalid_json": 2, "not_streams": 1, "too_large": 1, "content_type": 1, "unauthorized": 1}


FUZZED = st.one_of(
    mutated_body(),
    st.binary(max_size=400),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    ).map(lambda doc: orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)),
)


def test_every_json_object_gets_200_and_every_other_body_400_with_a_dead_letter(kafka, ingest) -> None:
    """Mutated real payloads and fuzz: nothing else is ever answered, and every 400 left its bytes in the
    dead-letter topic."""
    service, topic = ingest
    refused: list[bytes] = []

    @settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(FUZZED)
    def post(body: bytes) -> None:
        loaded = load_json(body)
        is_object = not isinstance(loaded, DecodeError) and isinstance(loaded[0], dict)
        status = service.post(body).status_code
        assert status == (200 if is_object else 400)
        if status == 400:
            refused.append(body)

    post()
    letters = asyncio.run(read_all(kafka, f"{topic}-dlq", expected=len(refused)))
    assert len(letters) == len(refused)
    assert sorted(r.value for r in letters) == sorted(refused)
    assert {header_map(r.headers)["reason"] for r in letters} <= {"invalid_json", "not_streams"}


def test_post_to_kafka_to_worker_to_amplitude(kafka, amplitude, ingest, topic_names, worker_factory) -> None:
    amp, url = amplitude
    service, topic = ingest
    dlq, group = topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {dlq: 1}))
    bodies = list(streams_requests(500, seed=22))
    for body in bodies:
        assert service.post(orjson.dumps(body)).status_code == 200
    worker = worker_factory(**worker_env(kafka, url, topic, dlq, group)).start()
    asyncio.run(wait_until_committed(kafka, topic, group, 120, worker.alive))
    assert worker.stop() == 0
    campaign_events = {
        e["event_uuid"]
        for b in bodies
        for e in b["events"]
        if e["event_code"] != "ADD_TO_CART"
        and (e["uid"] or e["user_attributes"].get("moe_anonymous_id"))
        and e["uid"] != "u1"
    }
    assert set(amp.recorder.by_insert_id) == campaign_events


def test_broker_down_gets_503_and_a_retried_batch_is_delivered_once(amplitude, topic_names, worker_factory) -> None:
    amp, url = amplitude
    broker = LocalKafka()
    servers = broker.start()
    topic, dlq, group = topic_names("ingest"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(servers, {topic: 2, dlq: 1}))
    service = Ingest(servers, topic, timeout_s=3)
    try:
        first = next(streams_requests(100, seed=23))
        assert service.post(orjson.dumps(first)).status_code == 200
        assert service.ready() == 200
        broker.stop()
        retried = next(streams_requests(100, seed=24))
        statuses = [service.post(orjson.dumps(retried)).status_code for _ in range(3)]
        assert statuses == [503, 503, 503]  # none 2xx while Kafka cannot store the batch
        assert service.ready() == 503  # a load balancer stops sending MoEngage's batches here
        broker.restart()
        deadline = time.monotonic() + 60
        while service.ready() != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert service.ready() == 200
        deadline = time.monotonic() + 60
        status = 0
        while status != 200 and time.monotonic() < deadline:  # MoEngage's retry, after the broker returns
            status = service.post(orjson.dumps(retried)).status_code
            time.sleep(0.5)
        assert status == 200
        worker = worker_factory(**worker_env(servers, url, topic, dlq, group)).start()
        asyncio.run(wait_until_committed(servers, topic, group, 120, worker.alive))
        worker.stop()
        sent = {
            e["event_uuid"]
            for b in (first, retried)
            for e in b["events"]
            if e["event_code"] != "ADD_TO_CART"
            and (e["uid"] or e["user_attributes"].get("moe_anonymous_id"))
            and e["uid"] != "u1"
        }
        # Amplitude shows each event once: it de-duplicates on insert_id, and the local service models that.
        # Receipts can exceed one: a 503'd batch stays in the producer's buffer and reaches Kafka when the
        # broker returns, and MoEngage's retry writes it again (at least once, never lost).
        assert set(amp.recorder.by_insert_id) == sent
        retried_ids = {e["event_uuid"] for e in retried["events"]} & sent
        print(
            f"\nbroker down: 3 x 503, then 200; {len(retried_ids)} retried events shown once in Amplitude, "
            f"{sum(amp.recorder.by_insert_id[i] for i in retried_ids) - len(retried_ids)} duplicate receipts "
            "absorbed by insert_id"
        )
    finally:
        service.runner.stop()
        broker.stop()
        if broker.data_dir is not None:
            shutil.rmtree(broker.data_dir, ignore_errors=True)


def test_one_bad_event_never_costs_its_batch(kafka, amplitude, ingest, topic_names, worker_factory) -> None:
    """100 events: one without a code, one that is a string, one whose user cannot be identified. The batch is
    stored (200); the worker delivers the 97, dead-letters 2 with their reasons and drops 1, saying why."""
    amp, url = amplitude
    service, topic = ingest
    dlq, group = topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {dlq: 1}))
    events: list = [  # type: ignore[type-arg]
        {"event_code": "SMS_SENT", "event_uuid": f"good-{i}", "uid": f"customer-{i}", "event_time": 1_700_000_000}
        for i in range(97)
    ]
    events.insert(10, {"event_uuid": "no-code", "uid": "customer-x", "event_time": 1_700_000_000})
    events.insert(50, "an event as a string")
    events.insert(70, {"event_code": "SMS_SENT", "event_uuid": "nobody", "uid": None, "event_time": 1_700_000_000})
    body = {"app_name": "Shop", "source": "MOENGAGE", "moe_request_id": "req-97", "events": events}
    answer = service.post(orjson.dumps(body))
    assert answer.status_code == 200
    assert answer.json() == {"status": "stored", "events": 100}

    worker = worker_factory(**worker_env(kafka, url, topic, dlq, group)).start()
    asyncio.run(wait_until_committed(kafka, topic, group, 120, worker.alive))
    outcomes = scrape_outcomes(f"http://127.0.0.1:{worker.web_port}/metrics")
    assert worker.stop() == 0
    assert set(amp.recorder.by_insert_id) == {f"good-{i}" for i in range(97)}
    letters = asyncio.run(read_all(kafka, dlq, expected=2))
    assert sorted(header_map(r.headers)["reason"] for r in letters) == ["missing_event_code", "wrong_type"]
    assert outcomes.reasons("dropped") == {"unidentifiable": 1}
    assert (outcomes.total("delivered"), outcomes.total("dead_lettered")) == (97, 2)


def test_a_body_from_another_source_is_stored_and_dead_lettered_once_as_not_streams(
    kafka, amplitude, ingest, topic_names, worker_factory
) -> None:
    amp, url = amplitude
    service, topic = ingest
    dlq, group = topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {dlq: 1}))
    events = [{"event_code": "SMS_SENT", "event_uuid": f"s-{i}", "uid": f"user-{i}"} for i in range(20)]
    body = orjson.dumps({"source": "Segment", "events": events})
    assert service.post(body).status_code == 200
    worker = worker_factory(**worker_env(kafka, url, topic, dlq, group)).start()
    asyncio.run(wait_until_committed(kafka, topic, group, 120, worker.alive))
    assert worker.stop() == 0
    [letter] = asyncio.run(read_all(kafka, dlq, expected=1))
    assert header_map(letter.headers)["reason"] == "not_streams"
    assert letter.value == body  # one dead letter for the body, holding it whole
    assert amp.recorder.accepted == 0


def test_a_truncated_body_gets_400_a_warning_and_a_dead_letter_holding_its_bytes(kafka, ingest, caplog) -> None:
    service, topic = ingest
    whole = orjson.dumps(next(streams_requests(100, seed=25)))
    truncated = whole[: len(whole) // 2]
    with caplog.at_level(logging.WARNING, logger="forwarder.ingest"):
        answer = service.post(truncated, {"X-MOE-Request-Id": "req-cut"})
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]
    [line] = [r for r in caplog.records if "refused a body" in r.getMessage()]
    assert line.fields == {
        "path": "/moengage/streams",
        "status": 400,
        "reason": "invalid_json",
        "moe_request_id": "req-cut",
        "bytes": len(truncated),
    }
    [letter] = asyncio.run(read_all(kafka, f"{topic}-dlq", expected=1))
    assert letter.value == truncated
    headers = header_map(letter.headers)
    assert (headers["reason"], headers["moe_request_id"], headers["body_bytes"]) == (
        "invalid_json",
        "req-cut",
        str(len(truncated)),
    )
    assert int(headers["received_at"]) > 1_700_000_000_000
