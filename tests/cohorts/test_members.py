"""Cohort payloads as Amplitude sends them -> MoEngage members: User Id first, then the anonymous id."""

from __future__ import annotations

import orjson
import pytest

from forwarder.cohorts.members import PayloadError, export_members, identity, parse_webhook, webhook_members
from forwarder.cohorts.requests import MAX_BODY_BYTES, bodies, segment_name


def test_user_id_first_then_the_anonymous_id_else_unmapped() -> None:
    assert identity("customer-1", "anon-1", "moe_anonymous_id") == ("uid", "customer-1")
    assert identity(None, "anon-1", "moe_anonymous_id") == ("moe_anonymous_id", "anon-1")
    assert identity("  ", "", "moe_anonymous_id") is None
    assert identity(12345, None, "x") == ("uid", "12345")
    assert identity(True, ["a"], "x") is None


def test_a_webhook_delivery_becomes_a_change_with_its_members() -> None:
    body = {
        "cohort_name": "Churn risk",
        "cohort_id": "abc123",
        "in_cohort": False,
        "computed_time": "1732780800",
        "message_id": "5a1e-uuid::exit::0",
        "users": [
            {"user_id": "customer-1", "user_properties": {"moe_anonymous_id": "anon-1"}},
            {"user_id": None, "user_properties": {"moe_anonymous_id": "anon-2"}},
            {"user_id": "", "user_properties": {}},
        ],
    }
    change = parse_webhook(orjson.dumps(body))
    assert (change.cohort_id, change.in_cohort, change.message_id) == ("abc123", False, "5a1e-uuid::exit::0")
    members, unmapped = webhook_members(change, "moe_anonymous_id", "moe_anonymous_id")
    assert members == [("uid", "customer-1"), ("moe_anonymous_id", "anon-2")]
    assert unmapped == 1


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"in_cohort": true, "users": []}', "cohort_id is missing"),
        (b'{"cohort_id": "c", "in_cohort": "yes", "users": []}', "in_cohort must be true or false"),
        (b'{"cohort_id": "c", "in_cohort": true, "users": [1]}', "users must be an array of objects"),
    ],
)
def test_a_webhook_body_that_cannot_be_used_says_why(body: bytes, why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        parse_webhook(body)


def test_an_export_csv_maps_each_row_and_finds_the_property_column_under_its_older_names() -> None:
    lines = ["amplitude_id,user_id,gp:moe_anonymous_id", "1,customer-1,anon-1", "2,,anon-2", "3,,", ""]
    assert list(export_members(lines, "moe_anonymous_id", "moe_anonymous_id")) == [
        ("uid", "customer-1"),
        ("moe_anonymous_id", "anon-2"),
        None,
    ]
    with pytest.raises(PayloadError, match="no user_id column"):
        list(export_members(["amplitude_id"], "moe_anonymous_id", "x"))


def test_requests_stay_under_128_kb_and_carry_every_member_once_in_order() -> None:
    members = [("uid", f"customer-{n:07d}") for n in range(20_000)]
    sent = list(bodies("add_members", "abc123", "[Amplitude] Churn risk", members))
    assert len(sent) > 1
    assert all(len(body) <= MAX_BODY_BYTES for body, _ in sent)
    carried = [m["uid"] for body, _ in sent for m in orjson.loads(body)["parameters"]["members"]]
    assert carried == [value for _, value in members]
    first = orjson.loads(sent[0][0])
    assert (first["action"], first["parameters"]["cohort_id"]) == ("add_members", "abc123")
    with pytest.raises(ValueError, match="unknown action"):
        list(bodies("delete_everyone", "c", "n", members))


def test_segment_names_lose_the_characters_moengage_refuses() -> None:
    assert segment_name("[Amplitude] ", 'Buyers: "EU" | >3 orders?') == "[Amplitude] Buyers EU 3 orders"
    assert segment_name("", "***") == "Amplitude cohort"
