"""Inputs as MoEngage and the companies consuming it really send them (shapes written for these tests)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from forwarder.core import Dropped, Forwarded, MappingRules, process_event, process_message
from forwarder.core.decode import Decoded, decode_message
from forwarder.core.identify import clean_id, identify, raw_anonymous_id
from forwarder.core.keys import partition_key
from forwarder.core.select import Selection

RULES = MappingRules()


def test_one_cp1252_byte_costs_nothing_the_events_are_repaired_and_kept() -> None:
    body = (
        b'{"app_name": "Shop", "moe_request_id": "req-42", "events": ['
        b'{"event_code": "MOE_EMAIL_SENT", "event_uuid": "e1", "uid": "customer-1", "event_time": 1700000000,'
        b' "event_attributes": {"campaign_id": "c1", "campaign_name": "O\x92Brien\x92s offer"}},'
        b'{"event_code": "SMS_SENT", "event_uuid": "e2", "uid": "customer-2", "event_time": 1700000000,'
        b' "event_attributes": {"campaign_id": "c2"}}]}'
    )
    result = process_message(body, RULES)
    assert result.error is None
    assert result.repaired
    assert result.request_id == "req-42"
    assert [type(o) for o in result.outcomes] == [Forwarded, Forwarded]
    first = result.outcomes[0]
    assert isinstance(first, Forwarded)
    assert first.event["event_properties"]["campaign_name"] == "O\ufffdBrien\ufffds offer"


def test_valid_utf8_is_not_marked_repaired() -> None:
    decoded = decode_message(orjson.dumps({"events": [{"event_code": "SMS_SENT"}]}))
    assert isinstance(decoded, Decoded)
    assert not decoded.repaired


def test_an_export_record_is_its_event() -> None:
    event = {"event_code": "SMS_SENT", "event_uuid": "x1", "uid": "customer-1", "event_time": 1700000000}
    record = {"export_doc_id": "doc-1", "event": event}
    for document in (record, [record, record]):
        result = process_message(orjson.dumps(document), RULES)
        assert result.error is None
        assert all(isinstance(o, Forwarded) and o.event["insert_id"] == "x1" for o in result.outcomes)


def test_flat_callbacks_carry_campaign_fields_at_the_top_level() -> None:
    flat = {
        "event_code": "NOTIFICATION_CLICKED_MOE",
        "uid": "customer-1",
        "event_time": 1700000000,
        "campaign_id": "top-c",
        "campaign_name": "Top",
        "parent_flow_id": "f1",
        "variation_id": "v2",
        "locale_name": "fr",
        "event_attributes": {"campaign_name": "Nested wins"},
    }
    outcome = process_event(flat, RULES)
    assert isinstance(outcome, Forwarded)
    props = outcome.event["event_properties"]
    assert (props["campaign_id"], props["campaign_name"]) == ("top-c", "Nested wins")
    assert (props["parent_flow_id"], props["variation_id"], props["locale_name"]) == ("f1", "v2", "fr")
    assert "missing_campaign_id" not in {w.kind for w in outcome.warnings}


def test_warnings_a_user_would_want_missing_campaign_id_and_implausible_times() -> None:
    def kinds(**fields: Any) -> set[str]:
        outcome = process_event({"event_code": "SMS_SENT", "uid": "customer-1", **fields}, RULES)
        assert isinstance(outcome, Forwarded)
        return {w.kind for w in outcome.warnings}

    assert "missing_campaign_id" in kinds(event_time=1700000000)
    assert kinds(event_time=1700000000, event_attributes={"campaign_id": "c"}) == set()
    assert "implausible_time" in kinds(event_time=1700, event_attributes={"campaign_id": "c"})  # 1970
    assert "implausible_time" in kinds(event_time=4102444800, event_attributes={"campaign_id": "c"})  # 2100
    # A code outside the catalogue (an explicitly selected user action) has no campaign to miss.
    rules = MappingRules(selection=Selection.parse("X"))
    outcome = process_event({"event_code": "X", "uid": "customer-1", "event_time": 1700000000}, rules)
    assert isinstance(outcome, Forwarded)
    assert outcome.warnings == ()


def test_an_empty_nested_anonymous_id_beside_a_top_level_one_is_one_id_for_everyone() -> None:
    event = {
        "event_code": "SMS_SENT",
        "event_time": 1700000000,
        "moe_anonymous_id": "anon-top-123",
        "user_attributes": {"moe_anonymous_id": ""},
    }
    outcome = process_event(event, RULES)
    assert isinstance(outcome, Forwarded)
    assert outcome.event["device_id"] == "anon-top-123"
    assert partition_key(event) == b"anon-top-123"


ID_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "null", "0", "undefined", "abc", "anon-12345", "  padded-id  "]),
    st.integers(-2, 10**12),
    st.lists(st.text(max_size=3), max_size=2),
    st.text(max_size=12),
)


@given(
    uid=ID_VALUES,
    nested=ID_VALUES,
    top=ID_VALUES,
    moengage=ID_VALUES,
    has_ua=st.booleans(),
)
def test_identity_and_partition_key_read_the_same_ids(
    uid: Any, nested: Any, top: Any, moengage: Any, has_ua: bool
) -> None:
    """The partition key is the first id Amplitude will see: never one identity would not use."""
    event: dict[str, Any] = {"event_code": "SMS_SENT", "event_time": 1700000000, "uid": uid, "moe_anonymous_id": top}
    if has_ua:
        event["user_attributes"] = {"moe_anonymous_id": nested, "moengage_user_id": moengage}
    identity = identify(event, 1)
    assert identity.user_id == clean_id(uid)
    assert identity.device_id == clean_id(raw_anonymous_id(event))
    key = partition_key(event)
    first = identity.user_id or identity.device_id or clean_id(moengage if has_ua else None) or ""
    assert key == first.encode()
    outcome = process_event(event, MappingRules(min_id_length=1))
    assert isinstance(outcome, Dropped) == (identity.user_id is None and identity.device_id is None)
