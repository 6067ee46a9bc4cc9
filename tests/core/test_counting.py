"""The one outcome counter: every outcome type lands under (outcome, reason, event code)."""

from __future__ import annotations

from forwarder.core import Dropped, Filtered, Invalid, MappingRules, OutcomeCounter, process_event
from forwarder.core.counting import NO_HOUR
from forwarder.core.slot import slot_of


def test_each_outcome_is_counted_under_its_outcome_reason_and_code() -> None:
    counter = OutcomeCounter()
    forwarded = process_event({"event_code": "SMS_SENT", "uid": "customer-1", "event_time": 1.7e9}, MappingRules())
    for outcome in (
        forwarded,
        Filtered("ADD_TO_CART"),
        Dropped("SMS_SENT", "unidentifiable"),
        Invalid(None, "invalid_json"),
    ):
        counter.count(outcome)
    counter.delivered("SMS_SENT", 3, hour=472_222, campaign="c-1")
    counter.dead_lettered("invalid_field:time", "SMS_SENT")
    assert counter.by_code == {
        ("forwarded", "", "SMS_SENT"): 1,
        ("filtered", "not_selected", "ADD_TO_CART"): 1,
        ("dropped", "unidentifiable", "SMS_SENT"): 1,
        ("dead_lettered", "invalid_json", ""): 1,
        ("delivered", "", "SMS_SENT"): 3,
        ("dead_lettered", "invalid_field:time", "SMS_SENT"): 1,
    }
    # The hour and campaign are kept for the ledger, and summed away by the views.
    assert counter.counts["delivered", "", "SMS_SENT", 472_222, "c-1", "default"] == 3
    assert counter.counts["dropped", "unidentifiable", "SMS_SENT", NO_HOUR, "", "default"] == 1
    assert counter.read == 8
    assert counter.total("dead_lettered") == 2
    assert counter.reasons("dead_lettered") == {"invalid_json": 1, "invalid_field:time": 1}
    assert counter.by_outcome == {"forwarded": 1, "filtered": 1, "dropped": 1, "dead_lettered": 2, "delivered": 3}
    assert counter.by_reason["dropped", "unidentifiable"] == 1


def test_counters_add_up_and_compare_by_value() -> None:
    a, b = OutcomeCounter(), OutcomeCounter()
    a.delivered("X", 2)
    b.delivered("X", 1)
    b.delivered("X", 1)
    assert a == b
    a.add(b)
    assert a.total("delivered") == 4


def test_an_event_is_filed_under_the_hour_of_its_own_time_and_its_campaign() -> None:
    # 2026-11-28T13:45:10Z, campaign in event_attributes (Streams) or at the top level (flat callbacks).
    streams = {"event_time": 1_795_873_510, "event_attributes": {"campaign_id": " c-42 "}, "campaign_id": "other"}
    flat = {"event_time": "2026-11-28T13:45:10Z", "campaign_id": 42}
    assert slot_of(streams) == (1_795_873_510 // 3600, "c-42")
    assert slot_of(flat) == (1_795_873_510 // 3600, "42")
    assert slot_of({"event_time": "yesterday", "campaign_id": ["a"]}) == (NO_HOUR, "")
    assert slot_of(["not", "an", "event"]) == (NO_HOUR, "")
    assert slot_of({"campaign_id": "x" * 500})[1] == "x" * 128
