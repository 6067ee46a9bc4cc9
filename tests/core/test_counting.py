"""The one outcome counter: every outcome type lands under (outcome, reason, event code)."""

from __future__ import annotations

from forwarder.core import Dropped, Filtered, Invalid, MappingRules, OutcomeCounter, process_event


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
    counter.delivered("SMS_SENT", 3)
    counter.dead_lettered("invalid_field:time", "SMS_SENT")
    assert counter.counts == {
        ("forwarded", "", "SMS_SENT"): 1,
        ("filtered", "not_selected", "ADD_TO_CART"): 1,
        ("dropped", "unidentifiable", "SMS_SENT"): 1,
        ("dead_lettered", "invalid_json", ""): 1,
        ("delivered", "", "SMS_SENT"): 3,
        ("dead_lettered", "invalid_field:time", "SMS_SENT"): 1,
    }
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
