"""``forwarder transform``, run as an operator would run it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "samples" / "streams-request.json"


def run(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", "transform", *args],
        input=stdin,
        env={**os.environ, **(env or {})},
        capture_output=True,
        check=False,
        timeout=60,
    )


def test_the_shared_sample_gives_two_events_and_one_unidentifiable(tmp_path: Path) -> None:
    summary = tmp_path / "s.json"
    result = run(str(SAMPLE), "--summary", str(summary))
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [e["event_type"] for e in lines] == ["Notification Received Android", "Email Sent"]
    assert json.loads(summary.read_text()) == {
        "read": 3,
        "forwarded": 2,
        "filtered": 0,
        "dropped": {"unidentifiable": 1},
        "invalid": 0,
        "warnings": {},
        "pii": {},
    }


def test_json_lines_with_a_broken_line_reports_it_and_goes_on(tmp_path: Path) -> None:
    good = orjson.dumps({"event_code": "SMS_SENT", "uid": "customer-1", "event_time": 1_700_000_000})
    data = good + b"\n{broken\n\n" + good + b"\n"
    summary = tmp_path / "s.json"
    result = run("-", "--summary", str(summary), stdin=data)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 2
    assert b"line 2: invalid (invalid_json)" in result.stderr
    assert json.loads(summary.read_text())["invalid"] == 1
    assert json.loads(summary.read_text())["read"] == 3


def test_selection_and_min_id_length_options(tmp_path: Path) -> None:
    events = [
        {"event_code": "SMS_SENT", "uid": "abc", "event_time": 1_700_000_000},
        {"event_code": "MOE_EMAIL_SENT", "uid": "customer-2", "event_time": 1_700_000_000},
    ]
    summary = tmp_path / "s.json"
    result = run("--events", "SMS", "--min-id-length", "3", "--summary", str(summary), stdin=orjson.dumps(events))
    assert result.returncode == 0
    assert [orjson.loads(x)["user_id"] for x in result.stdout.splitlines()] == ["abc"]
    assert json.loads(summary.read_text())["filtered"] == 1


def test_a_dry_run_reports_what_amplitude_would_change() -> None:
    event = {
        "event_code": "SMS_SENT",
        "uid": "customer-1",
        "event_time": 1_700_000_000,
        "event_attributes": {"campaign_name": "n" * 2000},
    }
    result = run(stdin=orjson.dumps(event))
    assert b"event 1 (SMS_SENT): event_properties.campaign_name: 2000 characters cut to 1024" in result.stderr


def test_usage_errors_exit_2() -> None:
    # Any code can be selected, spaces and all; a name that is no known code, channel or type is said aloud.
    unknown = run("--events", "Emial Campaigns", stdin=b"[]")
    assert unknown.returncode == 0
    assert b"exactly: 'Emial Campaigns'" in unknown.stderr
    assert run("--events", "channel:Emial").returncode == 2
    assert run("/no/such/file.json").returncode == 2
    assert run("--min-id-length", "zero").returncode == 2


def test_a_pretty_printed_document_that_does_not_parse_is_one_invalid_input(tmp_path: Path) -> None:
    document = json.dumps({"events": [{"event_code": "SMS_SENT", "uid": "customer-1", "event_time": 1}]}, indent=2)
    truncated = document.encode()[:-10]  # a cut-off download: 7 physical lines, one document
    summary = tmp_path / "s.json"
    result = run("-", "--summary", str(summary), stdin=truncated)
    assert result.returncode == 0
    assert json.loads(summary.read_text())["read"] == 1
    assert json.loads(summary.read_text())["invalid"] == 1
    assert result.stderr.count(b"invalid (invalid_json)") == 1


def test_warnings_are_counted_in_the_summary_and_said_on_stderr(tmp_path: Path) -> None:
    campaign = {"campaign_id": "c1"}
    lines = [
        # MoEngage's documentation sample style: a placeholder event_uuid reused across users and codes.
        {
            "event_code": "SMS_SENT",
            "event_uuid": "uuid",
            "uid": "customer-1",
            "event_time": 1.7e9,
            "event_attributes": campaign,
        },
        {
            "event_code": "MOE_EMAIL_SENT",
            "event_uuid": "uuid",
            "uid": "customer-2",
            "event_time": 1.7e9,
            "event_attributes": campaign,
        },
        {"event_code": "SMS_SENT", "event_uuid": "u3", "uid": "customer-3", "event_time": 1.7e9},
        {
            "event_code": "SMS_SENT",
            "event_uuid": "u4",
            "uid": "customer-4",
            "event_time": 17,
            "event_attributes": campaign,
        },
        {
            "export_doc_id": "d5",
            "event": {
                "event_code": "SMS_SENT",
                "event_uuid": "u5",
                "uid": "customer-5",
                "event_time": 1.7e9,
                "event_attributes": {"campaign_id": "c", "campaign_name": "n" * 2000},
            },
        },
    ]
    data = b"\n".join(orjson.dumps(line) for line in lines)
    data += (
        b'\n{"event_code": "SMS_SENT", "event_uuid": "u6", "uid": "customer-6", "event_time": 1700000000, '
        b'"event_attributes": {"campaign_id": "c\x92"}}\n'
    )
    summary = tmp_path / "s.json"
    result = run("-", "--summary", str(summary), stdin=data)
    assert result.returncode == 0, result.stderr
    counts = json.loads(summary.read_text())
    assert (counts["read"], counts["forwarded"]) == (6, 6)
    assert counts["warnings"] == {
        "cut_string": 1,
        "duplicate_insert_id": 1,
        "implausible_time": 1,
        "missing_campaign_id": 1,
        "repaired_utf8": 1,
    }
    assert b"repeats an earlier event's" in result.stderr
    assert b"bytes that are not UTF-8 were replaced" in result.stderr


def test_user_properties_go_with_a_users_first_event_and_again_only_when_they_change() -> None:
    events = [
        {
            "event_code": code,
            "event_uuid": f"e{n}",
            "event_time": 1_700_000_000 + n,
            "uid": "customer-1",
            "user_attributes": {"plan": plan, "city": "Paris"},
        }
        for n, (code, plan) in enumerate(
            [("MOE_EMAIL_SENT", "gold"), ("MOE_EMAIL_DELIVERED", "gold"), ("MOE_EMAIL_OPEN", "platinum")]
        )
    ]
    result = run(stdin=orjson.dumps({"events": events}), env={"FORWARDER_USER_PROPERTIES": "plan,city:setOnce"})
    assert result.returncode == 0, result.stderr
    sent = [orjson.loads(line).get("user_properties") for line in result.stdout.splitlines()]
    assert sent == [{"$set": {"plan": "gold"}, "$setOnce": {"city": "Paris"}}, None, {"$set": {"plan": "platinum"}}]


def test_pii_rules_hash_the_email_and_drop_the_number_and_count_both(tmp_path: Path) -> None:
    body = orjson.loads(SAMPLE.read_bytes())
    body["events"][1]["email_id"] = " Jane@Example.com "
    body["events"][1]["mobile_number"] = "+15550100"
    summary = tmp_path / "s.json"
    env = {"FORWARDER_PII": "moe_email_id:sha256,moe_mobile_number:drop", "FORWARDER_PII_SALT": "pepper"}
    result = run("--summary", str(summary), stdin=orjson.dumps(body), env=env)
    assert result.returncode == 0, result.stderr
    email = [orjson.loads(line) for line in result.stdout.splitlines()][1]["event_properties"]
    assert email["moe_email_id"] == hashlib.sha256(b"pepperjane@example.com").hexdigest()
    assert "moe_mobile_number" not in email
    assert json.loads(summary.read_text())["pii"] == {"moe_email_id": {"sha256": 1}, "moe_mobile_number": {"drop": 1}}
    assert b"Jane@Example.com" not in result.stdout + result.stderr
    assert b"pepper" not in result.stdout


def test_a_bad_pii_rule_is_one_clear_error_that_never_shows_the_salt() -> None:
    env = {"FORWARDER_PII": "moe_email_id:md5", "FORWARDER_PII_SALT": "pepper"}
    result = run(stdin=SAMPLE.read_bytes(), env=env)
    assert result.returncode == 2
    assert not result.stdout
    assert b"FORWARDER_PII: " in result.stderr
    assert b"drop or sha256" in result.stderr
    assert b"Traceback" not in result.stderr
    assert b"pepper" not in result.stderr
