"""User properties (FORWARDER_USER_PROPERTIES), the PII rules (FORWARDER_PII) and the per-user memory of values
already sent, in the pure core."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from forwarder.core.outcomes import Forwarded
from forwarder.core.pii import PiiRules
from forwarder.core.pipeline import MappingRules, process_event
from forwarder.core.property_memory import PropertyMemory
from forwarder.core.user_properties import UserPropertyRules


def event(uid: str = "user-0001", **user_attributes: Any) -> dict[str, Any]:
    return {
        "event_code": "MOE_EMAIL_SENT",
        "event_time": 1_700_000_000,
        "uid": uid,
        "email_id": " Jane@Example.com ",
        "mobile_number": 15550100,
        "event_attributes": {"campaign_id": "c1"},
        "user_attributes": user_attributes,
    }


def forwarded(raw: dict[str, Any], rules: MappingRules) -> Forwarded:
    outcome = process_event(raw, rules)
    assert isinstance(outcome, Forwarded)
    assert orjson.loads(outcome.encoded) == outcome.event  # what is sent is what the outcome says
    return outcome


def test_the_rules_parse_names_and_operations_and_refuse_what_they_cannot_read() -> None:
    rules = UserPropertyRules.parse(" plan, city:setOnce ,first_seen:SETONCE,tier:set,")
    assert rules is not None
    assert rules.names == (("plan", "$set"), ("city", "$setOnce"), ("first_seen", "$setOnce"), ("tier", "$set"))
    assert UserPropertyRules.parse("") is None
    assert UserPropertyRules.parse(" , ") is None
    for bad in ("plan:always", ":set", "plan,plan"):
        with pytest.raises(ValueError, match=r"plan|:set"):
            UserPropertyRules.parse(bad)
    assert PiiRules.parse("") is None
    for bad in ("moe_email_id", "moe_email_id:md5", ":drop", "a:drop,a:sha256"):
        with pytest.raises(ValueError, match=r"property:action|drop or sha256|named twice"):
            PiiRules.parse(bad)


def test_user_attributes_become_user_properties_with_their_json_types_and_without_empty_values() -> None:
    rules = MappingRules(user_properties=UserPropertyRules.parse("plan,score,vip,tags,city:setOnce,empty,gone,top"))
    raw = event(plan="gold", score=4.5, vip=False, tags=["a"], city="Paris", empty="  ", gone=None)
    raw["top"] = "from the top level"
    raw["user_attributes"]["nested"] = {"x": 1}
    outcome = forwarded(raw, rules)
    assert outcome.event["user_properties"] == {
        "$set": {"plan": "gold", "score": 4.5, "vip": False, "tags": ["a"], "top": "from the top level"},
        "$setOnce": {"city": "Paris"},
    }
    assert "user_properties" not in forwarded(event(), rules).event  # none of them: no key at all
    assert "user_properties" not in forwarded(event(plan="gold"), MappingRules()).event  # the default: none sent
    replaying = rules.user_properties
    assert replaying is not None
    set_once = forwarded(raw, MappingRules(user_properties=replaying.for_replays())).event["user_properties"]
    assert set(set_once) == {"$setOnce"}
    assert set_once["$setOnce"]["plan"] == "gold"


def test_pii_hashes_a_trimmed_lowercased_email_with_the_salt_and_drops_what_it_is_told_to() -> None:
    rules = MappingRules(
        pii=PiiRules.parse("moe_email_id:sha256,moe_mobile_number:drop,phone:sha256", salt="s3"),
        user_properties=UserPropertyRules.parse("phone"),
    )
    outcome = forwarded(event(phone=15550100), rules)
    props = outcome.event["event_properties"]
    assert props["moe_email_id"] == hashlib.sha256(b"s3jane@example.com").hexdigest()
    assert "moe_mobile_number" not in props
    # A user property is treated as an event property is; a number hashes its JSON text.
    assert outcome.event["user_properties"]["$set"]["phone"] == hashlib.sha256(b"s315550100").hexdigest()
    assert sorted(outcome.pii) == [("moe_email_id", "sha256"), ("moe_mobile_number", "drop"), ("phone", "sha256")]
    assert b"jane@example.com" not in outcome.encoded.lower()
    assert b"15550100" not in outcome.encoded
    plain = forwarded(event(), MappingRules())
    assert plain.event["event_properties"]["moe_email_id"] == " Jane@Example.com "
    assert plain.pii == ()


def test_a_value_is_sent_again_only_when_it_changed_for_that_user() -> None:
    rules = MappingRules(user_properties=UserPropertyRules.parse("plan,city:setOnce"))
    memory = PropertyMemory(10)
    sent = []
    for plan in ("gold", "gold", "platinum", "platinum"):
        outcome = forwarded(event(plan=plan, city="Paris"), rules)
        ticket = memory.offer(outcome)
        if ticket is not None:
            memory.settle(ticket, accepted=True)
        assert orjson.loads(outcome.encoded) == outcome.event  # re-encoded when values were left out
        sent.append(outcome.event.get("user_properties"))
    first = {"$set": {"plan": "gold"}, "$setOnce": {"city": "Paris"}}
    assert sent == [first, None, {"$set": {"plan": "platinum"}}, None]
    other = forwarded(event(uid="user-0002", plan="gold", city="Paris"), rules)
    memory.offer(other)
    assert other.event["user_properties"]["$set"] == {"plan": "gold"}  # another user's values are their own


def test_a_value_not_accepted_is_carried_by_the_users_next_event() -> None:
    rules = MappingRules(user_properties=UserPropertyRules.parse("plan"))
    memory = PropertyMemory(10)
    first, second, third = (forwarded(event(plan="gold"), rules) for _ in range(3))
    ticket = memory.offer(first)
    assert ticket is not None
    assert memory.offer(second) is None  # out with the first: not repeated while it is on its way
    memory.settle(ticket, accepted=False)  # the first was dead-lettered
    assert memory.offer(third) is not None
    assert third.event["user_properties"] == {"$set": {"plan": "gold"}}
    # A refusal of an older event does not forget a value a later event carries.
    fourth = forwarded(event(plan="platinum"), rules)
    old = memory.offer(fourth)
    fifth, sixth = forwarded(event(plan="gold"), rules), forwarded(event(plan="gold"), rules)
    assert memory.offer(fifth) is not None
    assert old is not None
    memory.settle(old, accepted=False)
    assert memory.offer(sixth) is None


def test_the_memory_forgets_the_least_recently_seen_user_first_and_stays_bounded() -> None:
    rules = MappingRules(user_properties=UserPropertyRules.parse("plan"))
    memory = PropertyMemory(2)
    for uid in ("user-000a", "user-000b", "user-000a", "user-000c"):
        memory.offer(forwarded(event(uid=uid, plan="gold"), rules))
    assert len(memory) == 2
    again_a, again_b = (forwarded(event(uid=uid, plan="gold"), rules) for uid in ("user-000a", "user-000b"))
    assert memory.offer(again_a) is None  # seen recently: remembered
    assert memory.offer(again_b) is not None  # forgotten: simply sent again


def test_values_python_calls_equal_are_different_json_values() -> None:
    rules = MappingRules(user_properties=UserPropertyRules.parse("score"))
    memory = PropertyMemory(10)
    carried = []
    for score in (1, 1.0, True, True, {"a": 1, "b": 2}, {"b": 2, "a": 1}):
        outcome = forwarded(event(score=score), rules)
        memory.offer(outcome)
        carried.append(outcome.event.get("user_properties", {}).get("$set", {}).get("score"))
    assert carried == [1, 1.0, True, None, {"a": 1, "b": 2}, None]
