"""``forwarder transform``, run as an operator would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "samples" / "streams-request.json"


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", "transform", *args],
        input=stdin,
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
    }


def test_json_lines_with_a_broken_line_reports_it_and_goes_on(tmp_path: Path) -> None:
    good = orjson.dumps({"event_code": "SMS_SENT", "uid": "customer-1", "event_time": 1_700_000_000})
    data = good + b"\n{broken\n\n" + good + b"\n"
    summary = tmp_path / "s.json"
    result = run("-", "--summary", str(summary), stdin=data)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 2
    assert b"line 2: invalid JSON" in result.stderr
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
    assert run("--events", "Emial Campaigns").returncode == 2
    assert run("/no/such/file.json").returncode == 2
    assert run("--min-id-length", "zero").returncode == 2
