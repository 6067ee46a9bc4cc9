"""A batch of Kafka messages -> final outcomes, without a broker (delivery against the local service)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError
from pydantic import SecretStr

from devkit.amplitude import AmplitudeService
from devkit.traffic import BASE_TIME, streams_requests
from forwarder.amplitude.client import AmplitudeClient
from forwarder.amplitude.delivery import Deliverer
from forwarder.amplitude.limits import HTTP_V2
from forwarder.core import MappingRules, OutcomeCounter
from forwarder.kafka.dead_letters import DeadLetterRecord, DeadLetterWriter, SourceRef
from forwarder.ledger.records import LedgerFormatError, LedgerRecord
from forwarder.processing import BatchProcessor, SourceMessage
from forwarder.worker.metrics import Metrics


class Letters(DeadLetterWriter):
    """Keeps what would be written to the dead-letter topic."""

    def __init__(self) -> None:
        self.records: list[object] = []

    async def write(self, records: list) -> None:  # type: ignore[type-arg]
        self.records.extend(records)


def messages(count: int) -> list[SourceMessage]:
    values = [orjson.dumps(body) for body in streams_requests(count, per_request=100, seed=7)]
    values += [b"not json", orjson.dumps({"event_code": "MOE_EMAIL_SENT", "uid": "customer-1", "event_time": "x"})]
    return [SourceMessage(SourceRef("t", 0, offset, None), value) for offset, value in enumerate(values)]


def processor(service: AmplitudeService, metrics: Metrics) -> BatchProcessor:
    client = AmplitudeClient(
        "http://amplitude.local/2/httpapi", SecretStr("k"), transport=httpx.ASGITransport(app=service.app)
    )

    async def no_wait(_seconds: float) -> None:
        return None

    return BatchProcessor(MappingRules(), Deliverer(client, HTTP_V2, no_wait), Letters(), metrics)


async def test_mapping_in_slices_gives_the_same_outcomes_as_mapping_at_once() -> None:
    batch = processor(AmplitudeService(), Metrics())
    at_once = batch.prepare(messages(2000))
    sliced = await batch.prepare_yielding(messages(2000), slice_bytes=4096)
    assert sliced.summary.as_dict() == at_once.summary.as_dict()
    assert [p.outcome.encoded for p in sliced.pending] == [p.outcome.encoded for p in at_once.pending]
    assert len(sliced.dead) == len(at_once.dead) == 2
    assert sliced.outcomes == at_once.outcomes


async def test_every_event_read_is_counted_once_under_its_final_outcome() -> None:
    service, metrics = AmplitudeService(), Metrics()
    batch = processor(service, metrics)
    summary = await batch.process(messages(2000))
    dropped, filtered = sum(summary.dropped.values()), sum(summary.filtered.values())
    dead = sum(summary.dead_lettered.values())
    assert summary.read == summary.delivered + dropped + filtered + dead == 2002
    assert summary.delivered == service.recorder.accepted > 0
    by_outcome: dict[str, float] = {}
    for sample in next(iter(metrics.events.collect())).samples:
        if sample.name.endswith("_total"):
            outcome = sample.labels["outcome"]
            by_outcome[outcome] = by_outcome.get(outcome, 0) + sample.value
    assert by_outcome.get("delivered") == summary.delivered
    assert sum(by_outcome.values()) == summary.read


class Ledger:
    """Keeps what would be written to the ledger topic; ``fail`` makes the write raise (a broker gone)."""

    def __init__(self, fail: bool = False) -> None:
        self.records: list[LedgerRecord] = []
        self.fail = fail

    async def write(self, records: list[LedgerRecord]) -> None:
        if self.fail:
            raise KafkaTimeoutError()
        self.records.extend(records)


def ledger_processor(service: AmplitudeService, ledger: Ledger) -> BatchProcessor:
    base = processor(service, Metrics())
    return BatchProcessor(
        base.rules, base.routing.stacks["default"].deliverer, Letters(), Metrics(), ledger=ledger, source="stream"
    )


async def test_a_run_writes_one_ledger_record_per_partition_with_every_outcome_by_hour_and_campaign() -> None:
    ledger = Ledger()
    batch = ledger_processor(AmplitudeService(), ledger)
    run = [SourceMessage(SourceRef("src", m.ref.offset % 2, 100 + m.ref.offset, None), m.value) for m in messages(600)]
    summary = await batch.process(run)

    assert [(r.source, r.topic, r.partition, r.first_offset, r.last_offset) for r in ledger.records] == [
        ("stream", "src", 0, 100, 106),
        ("stream", "src", 1, 101, 107),
    ]
    total = OutcomeCounter()
    for record in ledger.records:
        total.add(record.outcomes)
        assert record.written_at_ms > 0
    assert total == summary.outcomes
    assert total.read == 602
    # Filed under each event's hour and campaign (the traffic's campaigns are cmp-0000 .. cmp-0039).
    campaigns = {campaign for (_, _, _, _, campaign, _) in total.counts}
    assert {c for c in campaigns if c.startswith("cmp-")}
    assert "" in campaigns
    hours = {hour for (outcome, _, _, hour, *_) in total.counts if outcome == "delivered"}
    assert hours == {BASE_TIME // 3600, BASE_TIME // 3600 + 1} or hours == {BASE_TIME // 3600}
    delivered_types = {t for r in ledger.records for t in r.event_types.values()}
    assert "Email Sent" in delivered_types


async def test_a_run_whose_ledger_record_cannot_be_stored_fails_so_nothing_is_acknowledged() -> None:
    batch = ledger_processor(AmplitudeService(), Ledger(fail=True))
    with pytest.raises(KafkaTimeoutError):
        await batch.process(messages(100))


def test_a_ledger_record_survives_the_topic_and_a_bad_one_is_refused() -> None:
    record = LedgerRecord("replay", "src", 3, 10, 19, deferred=2, event_types={"SMS_SENT": "SMS Sent"})
    record.outcomes.delivered("SMS_SENT", 5, hour=490_000, campaign="c-1")
    record.outcomes.dead_lettered("invalid_json", "", 1)
    back = LedgerRecord.decode(record.encode())
    assert (back.source, back.topic, back.partition, back.first_offset, back.last_offset) == (
        "replay",
        "src",
        3,
        10,
        19,
    )
    assert back.outcomes == record.outcomes
    assert back.deferred == 2
    assert back.event_types == record.event_types
    assert record.key == b"replay|src|3|10-19"
    for bad in (b"not json", b"[]", b'{"v": 99}', record.encode().replace(b'"delivered"', b'"lost"')):
        with pytest.raises(LedgerFormatError):
            LedgerRecord.decode(bad)


async def test_an_event_from_the_retry_topic_is_parked_again_under_its_first_source_and_its_ledger_names_it() -> None:
    service = AmplitudeService()
    service.faults.throttled_users = {"customer-hot"}
    ledger, parked = Ledger(), Letters()
    base = processor(service, Metrics())
    client = base.routing.stacks["default"].deliverer
    assert isinstance(client, Deliverer)
    batch = BatchProcessor(
        MappingRules(),
        Deliverer(client._client, HTTP_V2, client._wait, defer_throttled=True),
        Letters(),
        Metrics(),
        retries=parked,
        ledger=ledger,
        source="retry",
    )
    first = SourceRef("src", 2, 150, b"k")
    hot = {"event_code": "SMS_SENT", "event_uuid": "h1", "uid": "customer-hot", "event_time": 1_700_000_000}
    calm = {"event_code": "SMS_SENT", "event_uuid": "c1", "uid": "customer-calm", "event_time": 1_700_000_000}
    messages = [
        SourceMessage(SourceRef("src-retry", 0, 7, b"k"), orjson.dumps(hot), (first, 3)),
        SourceMessage(SourceRef("src-retry", 0, 8, b"k"), orjson.dumps(calm), (SourceRef("src", 1, 20, None), 0)),
    ]
    await batch.process(messages)
    (again,) = parked.records
    assert isinstance(again, DeadLetterRecord)
    assert (again.source.topic, again.source.partition, again.source.offset, again.event_index) == ("src", 2, 150, 3)
    (record,) = ledger.records
    assert record.deferred == 1
    assert [origin for origin, _ in record.origins] == ["src/1/20/0"]


async def test_user_property_values_are_remembered_only_once_amplitude_accepted_them() -> None:
    from devkit.amplitude import Faults
    from forwarder.core.property_memory import PropertyMemory
    from forwarder.core.user_properties import UserPropertyRules

    service = AmplitudeService(faults=Faults(invalid_insert_ids={"e1"}))
    base = processor(service, Metrics())
    rules = MappingRules(user_properties=UserPropertyRules.parse("plan,city:setOnce"))
    batch = BatchProcessor(
        rules, base.routing.stacks["default"].deliverer, Letters(), Metrics(), memory=PropertyMemory(100)
    )

    def one(n: int, plan: str) -> list[SourceMessage]:
        raw = {
            "event_code": "MOE_EMAIL_SENT",
            "event_uuid": f"e{n}",
            "event_time": 1_700_000_000 + n,
            "uid": "customer-1",
            "user_attributes": {"plan": plan, "city": "Paris"},
        }
        return [SourceMessage(SourceRef("t", 0, n, None), orjson.dumps({"events": [raw]}))]

    first = await batch.process(one(1, "gold"))
    assert sum(first.dead_lettered.values()) == 1
    assert first.delivered == 0
    for n, plan in ((2, "gold"), (3, "gold"), (4, "platinum")):
        assert (await batch.process(one(n, plan))).delivered == 1
    carried = {e["insert_id"]: e.get("user_properties") for e in service.recorder.events}
    assert carried == {
        "e2": {"$set": {"plan": "gold"}, "$setOnce": {"city": "Paris"}},  # e1's values, refused with it: again
        "e3": None,
        "e4": {"$set": {"plan": "platinum"}},
    }


async def test_a_prepared_run_that_is_dropped_leaves_no_user_property_value_behind() -> None:
    """The ack loop maps a run again when its partition was partly revoked meanwhile: the first mapping was never
    sent, so the second must carry the values."""
    from forwarder.core.property_memory import PropertyMemory
    from forwarder.core.user_properties import UserPropertyRules

    service = AmplitudeService()
    base = processor(service, Metrics())
    rules = MappingRules(user_properties=UserPropertyRules.parse("plan"))
    batch = BatchProcessor(
        rules, base.routing.stacks["default"].deliverer, Letters(), Metrics(), memory=PropertyMemory(100)
    )
    raw = {"event_code": "MOE_EMAIL_SENT", "event_uuid": "e1", "event_time": 1_700_000_000, "uid": "customer-1"}
    raw["user_attributes"] = {"plan": "gold"}
    run = [SourceMessage(SourceRef("t", 0, 0, None), orjson.dumps({"events": [raw]}))]
    batch.prepare(run)  # dropped
    await batch.finish(batch.prepare(run))
    assert [e.get("user_properties") for e in service.recorder.events] == [{"$set": {"plan": "gold"}}]


async def test_runs_park_their_events_in_the_order_they_were_prepared_whatever_order_their_deliveries_end() -> None:
    """One user's events parked by two runs reach the retry topic in the order they were read, or the retry agent
    would deliver them out of order."""
    import asyncio

    from forwarder.amplitude.delivery import DeliveryReport

    class SlowFirstParking:
        """Parks every event; the first call answers last."""

        def __init__(self) -> None:
            self.calls = 0

        def flush(self) -> None:
            return None

        async def deliver(self, items: Sequence[Any]) -> DeliveryReport:
            self.calls += 1
            await asyncio.sleep(0.05 if self.calls == 1 else 0)
            return DeliveryReport(deferred=list(range(len(items))), defer_s=1.0, defer_reason="route_parked")

    parked = Letters()
    batch = BatchProcessor(MappingRules(), SlowFirstParking(), Letters(), Metrics(), retries=parked)

    def run(n: int) -> list[SourceMessage]:
        raw = {"event_code": "MOE_EMAIL_SENT", "event_uuid": f"e{n}", "event_time": 1_700_000_000, "uid": "customer-1"}
        return [SourceMessage(SourceRef("t", 0, n, None), orjson.dumps({"events": [raw]}))]

    first = asyncio.ensure_future(batch.finish(batch.prepare(run(1))))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batch.finish(batch.prepare(run(2))))
    await asyncio.gather(first, second)
    assert [orjson.loads(record.value)["event_uuid"] for record in parked.records] == ["e1", "e2"]  # type: ignore[attr-defined]
    assert {record.reason for record in parked.records} == {"route_parked"}  # type: ignore[attr-defined]


async def test_a_parked_or_refused_event_carries_the_event_as_it_came_decoded_again_from_its_message() -> None:
    """Pending events hold their message's bytes, not the parsed event: what is parked (throttled) or dead-lettered
    (refused) is the MoEngage event as it came, from inside a Streams body and from a message with bad bytes."""
    bodies = list(streams_requests(200, per_request=100, seed=11))
    hot, refused = (
        next(e for e in body["events"][7:] if e["uid"] and e["event_code"] != "ADD_TO_CART") for body in bodies
    )
    hot["uid"], refused["event_uuid"] = "customer-hot", "refuse-me"
    odd = {"event_code": "MOE_EMAIL_SENT", "uid": "customer-hot", "event_time": BASE_TIME, "event_uuid": "odd"}
    odd_value = orjson.dumps(odd).replace(b'"odd"', b'"odd\xe9"')  # a cp1252 byte: repaired, kept
    values = [orjson.dumps(body) for body in bodies] + [odd_value]
    service = AmplitudeService()
    service.faults.throttled_users = {"customer-hot"}
    service.faults.invalid_insert_ids = {"refuse-me"}
    client = AmplitudeClient(
        "http://amplitude.local/2/httpapi", SecretStr("k"), transport=httpx.ASGITransport(app=service.app)
    )
    letters, parked = Letters(), Letters()
    batch = BatchProcessor(
        MappingRules(), Deliverer(client, HTTP_V2, _no_wait, defer_throttled=True), letters, Metrics(), retries=parked
    )
    await batch.process([SourceMessage(SourceRef("t", 0, i, None), v) for i, v in enumerate(values)])
    await client.aclose()
    parked_records = [r for r in parked.records if isinstance(r, DeadLetterRecord)]
    parked_events = {orjson.loads(r.value)["event_uuid"]: r for r in parked_records}
    assert orjson.loads(parked_events[hot["event_uuid"]].value) == hot
    assert parked_events[hot["event_uuid"]].source.offset == 0
    assert orjson.loads(parked_events["odd\ufffd"].value)["uid"] == "customer-hot"
    (letter,) = [r for r in letters.records if isinstance(r, DeadLetterRecord)]
    assert letter.reason != "throttled"
    assert orjson.loads(letter.value) == refused
    assert letter.source.offset == 1


async def _no_wait(_seconds: float) -> None:
    return None
