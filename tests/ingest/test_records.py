"""A Streams body becomes one record per user key, each a Streams body of that user's events, in order."""

from __future__ import annotations

import re

import orjson
import pytest

from forwarder.core.keys import partition_key
from forwarder.ingest.records import NotStreamsRequest, parse_batch


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
    ("body", "message"),
    [
        (b"{nope", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"events": []}', "non-empty array"),
        (b'{"events": {"a": 1}}', "non-empty array"),
        (b'{"source": "OTHER", "events": [{"event_code": "X"}]}', "'source' must be MoEngage"),
        (b'{"events": [1]}', "events[0] must be an object"),
        (b'{"events": [{"uid": "x"}]}', "events[0] has neither event_code nor event_name"),
    ],
)
def test_bodies_that_are_not_streams_requests_are_refused_with_a_reason(body: bytes, message: str) -> None:
    with pytest.raises(NotStreamsRequest, match=re.escape(message)):
        parse_batch(body)


def test_source_is_compared_without_case() -> None:
    assert parse_batch(b'{"source": "MoEngage", "events": [{"event_code": "SMS_SENT"}]}').events


def test_envelope_fields_of_unexpected_types_do_not_cost_a_batch() -> None:
    # MoEngage drops a batch after three refused retries: only what makes it unusable is refused.
    body = b'{"app_name": 7, "moe_request_id": 12345, "extra": [1], "events": [{"event_code": "SMS_SENT"}]}'
    batch = parse_batch(body)
    assert batch.envelope == {"app_name": 7, "moe_request_id": 12345, "extra": [1]}
    assert len(batch.events) == 1
