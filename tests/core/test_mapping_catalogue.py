"""One golden case per catalogue event and per alias: what a marketer sees in Amplitude."""

from __future__ import annotations

import pytest

from forwarder.core import Forwarded, MappingRules, process_event
from schemas.catalogue import CATALOGUE

RULES = MappingRules()
ALL_CODES = [(event, code) for event in CATALOGUE.events for code in event.codes]


def streams_event(code: str, name: str) -> dict[str, object]:
    return {
        "event_name": name,
        "event_code": code,
        "event_uuid": f"uuid-{code}",
        "event_time": 1_700_000_000,
        "event_type": "CAMPAIGN_EVENT",
        "event_source": "MOENGAGE",
        "uid": "customer-42",
        "event_attributes": {
            "campaign_id": "cmp-1",
            "campaign_name": "Spring",
            "campaign_type": "GENERAL",
            "campaign_channel": "Email",
        },
        "user_attributes": {"moengage_user_id": "moe-42", "moe_anonymous_id": "anon-4242"},
    }


def test_catalogue_has_the_44_events_of_the_guide() -> None:
    assert len(CATALOGUE) == 44
    assert len({e.code for e in CATALOGUE.events}) == 44


@pytest.mark.parametrize(("definition", "code"), ALL_CODES, ids=[code for _, code in ALL_CODES])
def test_every_catalogue_code_and_alias_maps_to_its_canonical_event(definition, code) -> None:
    outcome = process_event(streams_event(code, "whatever the feed calls it"), RULES)

    assert isinstance(outcome, Forwarded)
    assert outcome.event == {
        "event_type": definition.name,
        "time": 1_700_000_000_000,
        "insert_id": f"uuid-{code}",
        "user_id": "customer-42",
        "device_id": "anon-4242",
        "event_properties": {
            "$source": "MOENGAGE",
            "UID": "customer-42",
            "moengage_user_id": "moe-42",
            "event_code": code,
            "campaign_id": "cmp-1",
            "campaign_name": "Spring",
            "campaign_type": "GENERAL",
            "campaign_channel": "Email",
        },
    }
    assert outcome.warnings == ()


def test_catalogue_codes_match_regardless_of_case() -> None:
    outcome = process_event(streams_event("ios_in_app_shown", "x"), RULES)
    assert isinstance(outcome, Forwarded)
    assert outcome.event["event_type"] == "In-App Shown iOS"
    assert outcome.event["event_properties"]["event_code"] == "ios_in_app_shown"


def test_event_with_only_a_known_name_is_recognised() -> None:
    event = streams_event("MOE_EMAIL_SENT", "Email Sent")
    del event["event_code"]
    outcome = process_event(event, RULES)
    assert isinstance(outcome, Forwarded)
    assert outcome.event["event_type"] == "Email Sent"
    assert outcome.event["event_properties"]["event_code"] == "MOE_EMAIL_SENT"
