"""A Streams body becomes one record per user key, each a Streams body of that user's events, in order."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given

from forwarder.core import MappingRules, process_message
from forwarder.core.decode import DecodeError, load_json
from forwarder.core.keys import partition_key
from forwarder.ingest.records import NotStreamsRequest, parse_batch
from tests.ingest.mutations import mutated_body

RULES = MappingRules()


def test_events_are_grouped_by_partition_of_their_user_in_order_and_keep_the_envelope() -> None:
    events = [
        {"event_code": "SMS_SENT", "uid": "customer-a", "event_uuid": "1"},
        {"event_code": "SMS_SENT", "uid": None, "user_attributes": {"moe_anonymous_id": "anon-b"}, "event_uuid": "2"},
        {"event_code": "SMS_SENT", "uid": "customer-a", "event_uuid": "3"},
        {"event_code": "SMS_SENT", "event_uuid": "4"},
    ]
    body = {"app_name": "App", "source": "MOENGAGE", "moe_request_id": "r-1", "events": events}
    partitions = {b"customer-a": 0, b"anon-b": 1, b"": 0}
    records = parse_batch(orjson.dumps(body)).records(partitions.__getitem__)
    by_partition = {r.partition: orjson.loads(r.value) for r in records}
    assert [e["event_uuid"] for e in by_partition[0]["events"]] == ["1", "3", "4"]  # MoEngage's order kept
    assert [e["event_uuid"] for e in by_partition[1]["events"]] == ["2"]
    assert by_partition[1]["moe_request_id"] == "r-1"
    assert sum(r.events for r in records) == 4


def test_partition_key_prefers_uid_then_anonymous_then_moengage_id() -> None:
    assert partition_key({"uid": 12345}) == b"12345"
    assert partition_key({"uid": "null", "user_attributes": {"moe_anonymous_id": "anon-1"}}) == b"anon-1"
    assert partition_key({"user_attributes": {"moengage_user_id": "moe-1"}}) == b"moe-1"
    assert partition_key("not an event") == b""


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (b"{nope", "invalid_json", "not valid JSON"),
        (b'{"events": [{"event_code": "X"}]', "invalid_json", "not valid JSON"),  # truncated
        (b"[]", "not_streams", "expected a JSON object, got list"),
        (b'"events"', "not_streams", "expected a JSON object, got str"),
        (b"42", "not_streams", "expected a JSON object, got int"),
    ],
)
def test_only_bodies_that_are_not_json_objects_are_refused_with_a_reason(
    body: bytes, reason: str, message: str
) -> None:
    with pytest.raises(NotStreamsRequest, match=re.escape(message)) as refused:
        parse_batch(body)
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": []}',
        b'{"events": {"a": 1}}',
        b'{"source": "Segment", "events": [{"event_code": "SMS_SENT", "uid": "u-1"}]}',
        b'{"hello": "world"}',
        b'{"event_code": "SMS_SENT", "uid": "u-1"}',  # one flat event
        b'{"export_doc_id": "d1", "event": {"event_code": "SMS_SENT"}}',  # an export line
    ],
)
def test_a_json_object_without_a_usable_events_list_is_stored_whole_for_the_worker_to_judge(body: bytes) -> None:
    [record] = parse_batch(body).records(lambda key: 0)
    assert record.value == body


def test_events_that_are_not_objects_or_lack_a_code_are_stored_with_their_neighbours() -> None:
    body = b'{"source": "MOENGAGE", "events": [1, {"uid": "x"}, {"event_code": "SMS_SENT", "uid": "x"}]}'
    records = parse_batch(body).records(lambda key: 0)
    assert [orjson.loads(r.value)["events"] for r in records] == [
        [1, {"uid": "x"}, {"event_code": "SMS_SENT", "uid": "x"}]
    ]
    assert sum(r.events for r in records) == 3


def test_source_is_compared_without_case() -> None:
    assert parse_batch(b'{"source": "MoEngage", "events": [{"event_code": "SMS_SENT"}]}').events


def test_envelope_fields_of_unexpected_types_do_not_cost_a_batch() -> None:
    # MoEngage drops a batch after three refused retries: only what makes it unusable is refused.
    body = b'{"app_name": 7, "moe_request_id": 12345, "extra": [1], "events": [{"event_code": "SMS_SENT"}]}'
    batch = parse_batch(body)
    assert batch.envelope == {"app_name": 7, "moe_request_id": 12345, "extra": [1]}
    assert len(batch.events) == 1


@given(mutated_body())
def test_every_json_object_is_stored_and_each_stored_event_gets_its_outcome(body: bytes) -> None:
    """Mutated real payloads: a body that parses as a JSON object (after the UTF-8 repair) is stored, every event in
    it once; its records give every event an outcome (or the whole body one dead letter); any other body is
    refused with its reason."""
    loaded = load_json(body)
    if isinstance(loaded, DecodeError) or not isinstance(loaded[0], dict):
        with pytest.raises(NotStreamsRequest) as refused:
            parse_batch(body)
        assert refused.value.reason == ("invalid_json" if isinstance(loaded, DecodeError) else "not_streams")
        return
    document = loaded[0]
    records = parse_batch(body).records(lambda key: len(key) % 3)
    events = document.get("events")
    outcomes = [process_message(record.value, RULES) for record in records]
    source = document.get("source")
    from_moengage = source is None or (isinstance(source, str) and source.casefold() == "moengage")
    if isinstance(events, list) and events and from_moengage:
        assert sum(r.events for r in records) == len(events)
        assert sum(len(result.outcomes) for result in outcomes) == len(events)
    else:
        [result] = outcomes
        assert len(result.outcomes) >= 1
