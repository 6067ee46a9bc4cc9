"""Property-based tests of the core's invariants over arbitrary, often malformed, events."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.core import Dropped, Filtered, Forwarded, Invalid, MappingRules, process_event, process_message
from forwarder.core.identify import PLACEHOLDER_IDS
from schemas.catalogue import CATALOGUE

RULES = MappingRules()
codes = st.sampled_from([c for e in CATALOGUE.events for c in e.codes] + ["ADD_TO_CART", "", "x"])
ids = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(min_value=-10, max_value=10**12),
    st.sampled_from(sorted(PLACEHOLDER_IDS)),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
)
times = st.one_of(
    st.none(),
    st.integers(min_value=-10, max_value=10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.datetimes().map(lambda d: d.isoformat()),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
attributes = st.one_of(st.none(), st.dictionaries(st.text(max_size=15), json_scalars, max_size=6), json_scalars)


@st.composite
def moengage_events(draw: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event_code": draw(codes)}
    for key, strategy in (
        ("uid", ids),
        ("event_time", times),
        ("event_uuid", st.one_of(st.none(), st.uuids().map(str))),
        ("event_attributes", attributes),
        ("email_id", json_scalars),
    ):
        if draw(st.booleans()):
            event[key] = draw(strategy)
    if draw(st.booleans()):
        event["user_attributes"] = {"moe_anonymous_id": draw(ids), "moengage_user_id": draw(json_scalars)}
    return event


@given(moengage_events())
@settings(max_examples=400)
def test_every_event_gets_exactly_one_outcome_and_forwarded_events_are_sendable(event: dict[str, Any]) -> None:
    outcome = process_event(event, RULES)
    assert isinstance(outcome, Forwarded | Filtered | Dropped | Invalid)
    if isinstance(outcome, Forwarded):
        amp = outcome.event
        # No forwarded event without user_id or device_id, and those are usable ids.
        assert "user_id" in amp or "device_id" in amp
        for key in ("user_id", "device_id"):
            if key in amp:
                assert isinstance(amp[key], str)
                assert len(amp[key]) >= RULES.min_id_length
                assert amp[key].casefold() not in PLACEHOLDER_IDS
        # time is integer ms
        assert type(amp["time"]) is int
        assert amp["time"] > 0
        assert amp["event_properties"]["$source"] == "MOENGAGE"
        orjson.dumps(amp)  # always encodable


@given(moengage_events())
def test_insert_id_is_stable_for_the_same_input(event: dict[str, Any]) -> None:
    first = process_event(event, RULES)
    again = process_event(copy.deepcopy(event), RULES)
    if isinstance(first, Forwarded):
        assert isinstance(again, Forwarded)
        assert first.event["insert_id"] == again.event["insert_id"]


@given(st.lists(st.integers(min_value=1_600_000_000, max_value=1_900_000_000), min_size=2, max_size=30, unique=True))
def test_insert_ids_are_distinct_across_distinct_events(times_s: list[int]) -> None:
    events = [{"event_code": "SMS_SENT", "uid": "customer-1", "event_time": t} for t in times_s]
    outcomes = [process_event(e, RULES) for e in events]
    ids = [o.event["insert_id"] for o in outcomes if isinstance(o, Forwarded)]
    assert len(ids) == len(events) == len(set(ids))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_and_always_have_an_outcome(raw: bytes) -> None:
    result = process_message(raw, RULES)
    assert len(result.outcomes) >= (0 if result.error is None else 1)
    assert (result.error is None) == (len(result.outcomes) == len(result.events))
