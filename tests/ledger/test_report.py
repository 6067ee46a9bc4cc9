"""The report adds the settled ledger up per campaign, code, hour or day; its totals balance."""

from __future__ import annotations

import csv
import io

import orjson

from forwarder.core.counting import NO_HOUR
from forwarder.ledger.records import LedgerRecord
from forwarder.ledger.report import Window, build_report, render

H = 491_000  # an hour since the epoch: 2026-01-05T08:00Z


def record(source: str, first: int, last: int) -> LedgerRecord:
    return LedgerRecord(source, "src", 0, first, last)


def ledger() -> list[LedgerRecord]:
    live = record("stream", 0, 9)
    live.outcomes.delivered("MOE_EMAIL_SENT", 5, hour=H, campaign="c-1")
    live.outcomes.delivered("MOE_EMAIL_SENT", 2, hour=H + 30, campaign="c-2")
    live.outcomes.add_key(("filtered", "not_selected", "ADD_TO_CART", H, "c-1", "default"), 3)
    live.outcomes.add_key(("dropped", "unidentifiable", "MOE_EMAIL_SENT", H, "c-1", "default"), 2)
    live.outcomes.dead_lettered("invalid_field:time", "MOE_EMAIL_SENT", 1, H, "c-2")
    live.outcomes.dead_lettered("invalid_json", "", 1)  # no time, no campaign
    resend = record("replay-dlq", 0, 0)
    resend.outcomes.delivered("MOE_EMAIL_SENT", 1, hour=H, campaign="c-2")
    return [live, resend]


def test_rows_by_campaign_keep_live_traffic_and_re_sends_apart_and_balance() -> None:
    report = build_report(ledger(), "campaign")
    rows = {row.label: row.as_dict() for row in report.rows}
    assert rows["c-1"]["read"] == 10
    assert rows["c-1"]["delivered"] == 5
    assert rows["c-1"]["dropped_by_reason"] == {"unidentifiable": 2}
    assert rows["c-2"]["resent"] == 1
    assert rows["c-2"]["read"] == 3
    assert rows["(no campaign)"]["dead_lettered_by_reason"] == {"invalid_json": 1}
    assert report.total.read == 14
    text, holds = report.balance()
    assert holds
    assert text == "read 14 = delivered 7 + filtered 3 + dropped 2 + dead-lettered 2: OK"


def test_by_day_and_hour_and_a_window_on_the_events_own_time() -> None:
    by_day = build_report(ledger(), "day")
    assert [row.label for row in by_day.rows] == ["2026-01-05", "2026-01-06", "(no event time)"]
    window = Window(start_ms=(H + 1) * 3_600_000 - 1, end_ms=(H + 31) * 3_600_000)  # one ms into hour H .. H+30
    by_hour = build_report(ledger(), "hour", window)
    assert [row.label for row in by_hour.rows] == ["2026-01-05T08:00Z", "2026-01-06T14:00Z"]
    # Events without a time belong to no window.
    assert by_hour.total.read == 13
    assert not Window(start_ms=0).holds(NO_HOUR)
    assert Window().holds(NO_HOUR)


def test_hours_and_days_in_the_projects_time_zone() -> None:
    from zoneinfo import ZoneInfo

    from forwarder.ledger.report import off_the_hour

    la = ZoneInfo("America/Los_Angeles")
    by_day = build_report(ledger(), "day", zone=la)
    assert [row.label for row in by_day.rows] == ["2026-01-05", "2026-01-06", "(no event time)"]
    by_hour = build_report(ledger(), "hour", zone=la)
    assert by_hour.rows[0].label == "2026-01-05T00:00-08:00"  # 08:00Z
    assert "hours and days in America/Los_Angeles" in render(by_hour, "table")
    assert orjson.loads(render(by_hour, "json"))["timezone"] == "America/Los_Angeles"
    assert not off_the_hour(la, [H, H + 1])
    assert off_the_hour(ZoneInfo("Asia/Kolkata"), [H])  # +05:30: an hour lies across two local days


def test_table_csv_and_json_say_the_same() -> None:
    report = build_report(ledger(), "code")
    table = render(report, "table")
    assert "MOE_EMAIL_SENT" in table
    assert table.splitlines()[-1].endswith(": OK")
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    email = next(r for r in rows if r["code"] == "MOE_EMAIL_SENT")
    assert (email["read"], email["delivered"], email["resent"], email["dropped:unidentifiable"]) == (
        "10",
        "7",
        "1",
        "2",
    )
    assert rows[-1]["code"] == "total"
    assert rows[-1]["read"] == "14"
    body = orjson.loads(render(report, "json"))
    assert body["total"]["read"] == 14
    assert body["balance"]["holds"] is True
    assert {r["code"] for r in body["rows"]} == {"MOE_EMAIL_SENT", "ADD_TO_CART", "(no event code)"}
