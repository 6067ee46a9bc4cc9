"""Bad input gets a stated reason and never raises: the worker dead-letters it and keeps going."""

from __future__ import annotations

import orjson
import pytest

from forwarder.core import Forwarded, Invalid, MappingRules, process_message
from forwarder.core.decode import DecodeError, decode_message

RULES = MappingRules()
GOOD = {"event_code": "SMS_SENT", "uid": "customer-1", "event_time": 1_700_000_000}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),  # not UTF-8 and, repaired, still not JSON
        (b"[" * 10_000 + b"]" * 10_000, "invalid_json"),  # 10,000-deep nesting
        (b'"a string"', "not_streams"),
        (b"42", "not_streams"),
        (b'{"hello": "world"}', "not_streams"),
        (b'{"events": "not a list"}', "not_streams"),
        (b'{"events": []}', "not_streams"),
        (b'{"source": "Segment", "events": [{"event_code": "SMS_SENT"}]}', "not_streams"),
        (b'{"source": 5, "events": [{"event_code": "SMS_SENT"}]}', "not_streams"),
        (b"", "invalid_json"),
    ],
)
def test_whole_message_errors_have_a_reason(raw: bytes, reason: str) -> None:
    result = process_message(raw, RULES)
    assert result.error is not None
    assert result.error.reason == reason
    assert result.outcomes == [Invalid(None, reason, result.error.detail)]


def test_oversized_message_is_refused_before_parsing() -> None:
    raw = orjson.dumps({"events": [GOOD], "padding": "x" * 5_000_000})
    decoded = decode_message(raw, max_bytes=1024 * 1024)
    assert isinstance(decoded, DecodeError)
    assert decoded.reason == "too_large"


def test_one_bad_element_does_not_hide_its_neighbours() -> None:
    body = {"app_name": "a", "source": "MOENGAGE", "events": [GOOD, "oops", {"no": "code"}, GOOD]}
    result = process_message(orjson.dumps(body), RULES)
    kinds = [type(o).__name__ for o in result.outcomes]
    assert kinds == ["Forwarded", "Invalid", "Invalid", "Forwarded"]
    assert [o.reason for o in result.outcomes if isinstance(o, Invalid)] == ["wrong_type", "missing_event_code"]


def test_a_single_event_and_an_array_of_bodies_are_accepted() -> None:
    assert isinstance(process_message(orjson.dumps(GOOD), RULES).outcomes[0], Forwarded)
    nested = [{"events": [GOOD, GOOD]}, GOOD]
    assert len(process_message(orjson.dumps(nested), RULES).outcomes) == 3
