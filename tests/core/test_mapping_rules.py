"""Each rule of shared/spec/mapping.md with its edge cases."""

from __future__ import annotations

from typing import Any

import pytest

from forwarder.core import Dropped, Filtered, Forwarded, Invalid, MappingRules, Selection, process_event
from forwarder.core.mapping import MAX_STRING_LENGTH, insert_id

RULES = MappingRules()


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_name": "Email Sent",
        "event_code": "MOE_EMAIL_SENT",
        "event_uuid": "u-1",
        "event_time": 1_668_600_246,
        "uid": "customer-0002",
        "event_attributes": {
            "campaign_id": "c1",
            "campaign_name": "Welcome",
            "campaign_type": "GENERAL",
            "campaign_channel": "EMAIL",
        },
        "user_attributes": {"moengage_user_id": "moe-2"},
    }
    base.update(overrides)
    return base


def forwarded(ev: dict[str, Any], rules: MappingRules = RULES) -> Forwarded:
    outcome = process_event(ev, rules)
    assert isinstance(outcome, Forwarded), outcome
    return outcome


# -- identity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uid",
    [
        None,
        "",
        "   ",
        "null",
        "NULL",
        "Anonymous",
        "undefined",
        "n/a",
        "0",
        "-1",
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "None",
        "nil",
    ],
)
def test_placeholder_or_missing_uid_without_anonymous_id_is_dropped_as_unidentifiable(uid: Any) -> None:
    assert process_event(event(uid=uid), RULES) == Dropped("MOE_EMAIL_SENT", "unidentifiable")


def test_missing_uid_key_is_unidentifiable() -> None:
    ev = event()
    del ev["uid"]
    assert process_event(ev, RULES) == Dropped("MOE_EMAIL_SENT", "unidentifiable")


def test_anonymous_id_alone_becomes_device_id() -> None:
    out = forwarded(event(uid=None, user_attributes={"moengage_user_id": "m", "moe_anonymous_id": "anon-123"}))
    assert "user_id" not in out.event
    assert out.event["device_id"] == "anon-123"
    assert "UID" not in out.event["event_properties"]


def test_top_level_anonymous_id_is_read_too() -> None:
    out = forwarded(event(uid=None, moe_anonymous_id="anon-top-1"))
    assert out.event["device_id"] == "anon-top-1"


def test_short_ids_are_dropped_as_too_short() -> None:
    outcome = process_event(event(uid="abc", user_attributes={"moe_anonymous_id": "xy"}), RULES)
    assert outcome == Dropped("MOE_EMAIL_SENT", "id_too_short")


def test_a_short_uid_is_left_out_when_the_device_id_is_usable() -> None:
    out = forwarded(event(uid="abc", user_attributes={"moe_anonymous_id": "anon-device"}))
    assert "user_id" not in out.event
    assert out.event["device_id"] == "anon-device"
    assert any("below the minimum" in w.text for w in out.warnings)


def test_min_id_length_is_configurable() -> None:
    out = forwarded(event(uid="abc"), MappingRules(min_id_length=3))
    assert out.event["user_id"] == "abc"


def test_numeric_uid_becomes_a_string_and_whitespace_is_stripped() -> None:
    assert forwarded(event(uid=1234567)).event["user_id"] == "1234567"
    assert forwarded(event(uid=1234567.0)).event["user_id"] == "1234567"
    assert forwarded(event(uid="  customer-7  ")).event["user_id"] == "customer-7"


def test_uid_property_keeps_the_raw_value() -> None:
    out = forwarded(event(uid=1234567))
    assert out.event["event_properties"]["UID"] == 1234567


@pytest.mark.parametrize("uid", [True, ["a-list-id"], {"id": "x"}])
def test_uid_of_the_wrong_type_is_not_an_id(uid: Any) -> None:
    assert process_event(event(uid=uid), RULES) == Dropped("MOE_EMAIL_SENT", "unidentifiable")


# -- time -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected_ms"),
    [
        (1_668_600_246, 1_668_600_246_000),
        (1_668_600_246.5, 1_668_600_246_500),
        (1_668_600_246_123, 1_668_600_246_123),  # already milliseconds
        ("1668600246", 1_668_600_246_000),
        ("2022-11-16T12:04:06Z", 1_668_600_246_000),
        ("2022-11-16T12:04:06+00:00", 1_668_600_246_000),
        ("2022-11-16T13:04:06+01:00", 1_668_600_246_000),
        ("2022-11-16T12:04:06", 1_668_600_246_000),  # naive means UTC
        ("2022-11-16T12:04:06.250Z", 1_668_600_246_250),
    ],
)
def test_event_time_becomes_integer_milliseconds(given: Any, expected_ms: int) -> None:
    out = forwarded(event(event_time=given))
    assert out.event["time"] == expected_ms
    assert type(out.event["time"]) is int


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (None, "missing_time"),
        ("", "missing_time"),
        (1.8e19, "invalid_time"),
        (0.0001, "invalid_time"),
        ("yesterday", "invalid_time"),
        (True, "invalid_time"),
        (-5, "invalid_time"),
        ([1], "invalid_time"),
        (float("nan"), "invalid_time"),
    ],
)
def test_missing_or_unparseable_time_is_invalid_not_guessed(given: Any, reason: str) -> None:
    outcome = process_event(event(event_time=given), RULES)
    assert isinstance(outcome, Invalid)
    assert outcome.reason == reason
    assert outcome.code == "MOE_EMAIL_SENT"


def test_absent_time_key_is_invalid() -> None:
    ev = event()
    del ev["event_time"]
    assert process_event(ev, RULES) == Invalid("MOE_EMAIL_SENT", "missing_time", "event_time is missing")


# -- fields -----------------------------------------------------------------------------------------------


def test_channel_ids_at_the_top_level() -> None:
    props = forwarded(event(email_id="a@b.c", push_id="tok", mobile_number="+1555")).event["event_properties"]
    assert (props["moe_email_id"], props["moe_push_id"], props["moe_mobile_number"]) == ("a@b.c", "tok", "+1555")


def test_channel_ids_inside_event_attributes() -> None:
    attrs = {"campaign_id": "c", "moe_email_id": "in@attrs", "moe_push_id": "p-tok", "moe_mobile_number": "+44"}
    props = forwarded(event(event_attributes=attrs)).event["event_properties"]
    assert (props["moe_email_id"], props["moe_push_id"], props["moe_mobile_number"]) == ("in@attrs", "p-tok", "+44")


def test_email_id_inside_event_attributes_is_read_and_not_duplicated() -> None:
    props = forwarded(event(event_attributes={"email_id": "x@y.z"})).event["event_properties"]
    assert props["moe_email_id"] == "x@y.z"
    assert "email_id" not in props


def test_top_level_channel_id_wins_over_event_attributes() -> None:
    props = forwarded(event(email_id="top@level", event_attributes={"moe_email_id": "attr@level"})).event[
        "event_properties"
    ]
    assert props["moe_email_id"] == "top@level"


def test_flow_variation_and_locale_fields_and_custom_attributes_pass_through() -> None:
    attrs = {
        "campaign_id": "c",
        "parent_flow_id": "f-1",
        "parent_flow_name": "Onboarding",
        "variation_id": 2,
        "locale_id": "fr",
        "locale_name": "French",
        "coupon": {"code": "SPRING"},
    }
    props = forwarded(event(event_attributes=attrs)).event["event_properties"]
    for key, value in attrs.items():
        assert props[key] == value


def test_null_attributes_are_left_out() -> None:
    props = forwarded(event(event_attributes={"campaign_id": "c", "variation_id": None}, email_id=None)).event[
        "event_properties"
    ]
    assert "variation_id" not in props
    assert "moe_email_id" not in props


def test_null_attribute_objects_are_tolerated() -> None:
    out = forwarded(event(event_attributes=None, user_attributes=None))
    assert out.event["event_properties"]["$source"] == "MOENGAGE"


def test_an_attribute_json_cannot_carry_is_invalid_not_a_crash() -> None:
    outcome = process_event(event(event_attributes={"campaign_id": "c", "huge": 2**70}), RULES)
    assert isinstance(outcome, Invalid)
    assert outcome.reason == "unencodable"


def test_attributes_of_the_wrong_type_are_invalid() -> None:
    outcome = process_event(event(event_attributes=["not", "an", "object"]), RULES)
    assert isinstance(outcome, Invalid)
    assert outcome.reason == "wrong_type"


def test_fixed_properties_cannot_be_overridden_by_event_attributes() -> None:
    props = forwarded(event(event_attributes={"$source": "EVIL", "event_code": "X"})).event["event_properties"]
    assert props["$source"] == "MOENGAGE"
    assert props["event_code"] == "MOE_EMAIL_SENT"


def test_long_strings_are_cut_to_1024_characters_with_a_warning() -> None:
    out = forwarded(event(event_attributes={"campaign_name": "x" * 5000, "nested": {"deep": ["y" * 2000]}}))
    props = out.event["event_properties"]
    assert len(props["campaign_name"]) == MAX_STRING_LENGTH
    assert len(props["nested"]["deep"][0]) == MAX_STRING_LENGTH
    assert any("campaign_name: 5000 characters cut" in w.text for w in out.warnings)
    assert any("nested.deep[0]" in w.text for w in out.warnings)


# -- selection --------------------------------------------------------------------------------------------


def test_unknown_codes_and_user_action_events_are_filtered_by_default() -> None:
    assert process_event(event(event_code="ADD_TO_CART", event_name="Add To Cart"), RULES) == Filtered("ADD_TO_CART")


def test_an_explicitly_selected_non_catalogue_code_is_forwarded_under_its_own_name() -> None:
    rules = MappingRules(selection=Selection.parse("all,ADD_TO_CART"))
    out = forwarded(event(event_code="ADD_TO_CART", event_name="Add To Cart", event_type="USER_ACTION_EVENT"), rules)
    assert out.event["event_type"] == "Add To Cart"
    unnamed = forwarded(event(event_code="ADD_TO_CART", event_name=None), rules)
    assert unnamed.event["event_type"] == "ADD_TO_CART"


@pytest.mark.parametrize(
    ("selection", "code", "selected"),
    [
        ("Email", "MOE_EMAIL_SENT", True),
        ("email", "SMS_SENT", False),
        ("Delivery", "MOE_EMAIL_DELIVERED", True),
        ("Interaction", "MOE_EMAIL_DELIVERED", False),
        ("SMS_SENT", "SMS_SENT", True),
        ("SMS_SENT", "SMS_DELIVERED", False),
        ("MOE_CARD_CAMPAIGN_VIEWED", "MOE_CARD_IMPRESSION", True),  # an alias counts as its event
        ("MOE_CARD_IMPRESSION", "MOE_CARD_CAMPAIGN_VIEWED", True),
        ("Push, SMS", "SMS_DELIVERED", True),
        ("All Campaigns", "MOE_CAMPAIGN_CONTROL_GROUP", True),
        ("Device Uninstall", "Device Uninstall", True),  # MoEngage's codes may hold spaces
        ("code:Device Uninstall, Email", "Device Uninstall", True),
        ("code:Device Uninstall", "Device Install", False),
        ("code:SMS_SENT", "SMS_SENT", True),
        ('"code:A, B",SMS', "A, B", True),  # quoted: a code with a comma
        ("channel:Email", "MOE_EMAIL_SENT", True),
        ("type:Delivery", "MOE_EMAIL_DELIVERED", True),
    ],
)
def test_selection_by_code_channel_or_type(selection: str, code: str, selected: bool) -> None:
    outcome = process_event(event(event_code=code), MappingRules(selection=Selection.parse(selection)))
    assert isinstance(outcome, Forwarded) is selected
    if not selected:
        assert outcome == Filtered(code)


@pytest.mark.parametrize("text", ["", " , ", "channel:Emial", "type:Deliveries", '"unclosed'])
def test_a_bad_selection_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"empty|is not a channel|is not a type|cannot split"):
        Selection.parse(text)


def test_a_name_that_is_both_a_channel_and_a_code_means_the_channel_unless_prefixed() -> None:
    selection = Selection.parse("SMS")
    assert "SMS" not in selection.extra_codes
    assert Selection.parse("code:SMS").extra_codes == {"SMS"}
    assert Selection.parse("Device Uninstall").describe_extra() is not None
    assert Selection.parse("Email").describe_extra() is None


def test_filtering_happens_before_identification() -> None:
    # A non-selected event is "filtered" even when it could not be identified either.
    assert process_event(event(event_code="ADD_TO_CART", uid=None), RULES) == Filtered("ADD_TO_CART")


# -- insert_id --------------------------------------------------------------------------------------------


def test_insert_id_is_the_event_uuid() -> None:
    assert forwarded(event(event_uuid="  abc-123 ")).event["insert_id"] == "abc-123"


def test_insert_id_without_uuid_is_deterministic_and_distinct() -> None:
    a = event(event_uuid=None)
    b = event(event_uuid=None, event_time=1_668_600_247)
    assert insert_id(a, "MOE_EMAIL_SENT") == insert_id(dict(a), "MOE_EMAIL_SENT")
    assert insert_id(a, "MOE_EMAIL_SENT") != insert_id(b, "MOE_EMAIL_SENT")
    assert insert_id(a, "MOE_EMAIL_SENT") != insert_id(a, "MOE_EMAIL_OPEN")
    assert forwarded(a).event["insert_id"].startswith("moe-")


# -- shape ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, 3, "text", ["a"]])
def test_an_event_that_is_not_an_object_is_invalid(bad: Any) -> None:
    outcome = process_event(bad, RULES)
    assert isinstance(outcome, Invalid)
    assert outcome.reason == "wrong_type"


def test_an_event_without_code_or_known_name_is_invalid() -> None:
    outcome = process_event({"event_name": "Something Else", "uid": "customer-1", "event_time": 1}, RULES)
    assert isinstance(outcome, Invalid)
    assert outcome.reason == "missing_event_code"


def test_a_long_channel_id_in_the_attributes_is_cut_once_under_its_canonical_name() -> None:
    out = forwarded(event(event_attributes={"campaign_id": "c1", "email_id": "e" * 2000}))
    props = out.event["event_properties"]
    assert props["moe_email_id"] == "e" * MAX_STRING_LENGTH
    assert "email_id" not in props
    assert [w.text for w in out.warnings if "2000 characters" in w.text] == [
        f"event_properties.moe_email_id: 2000 characters cut to {MAX_STRING_LENGTH}"
    ]
