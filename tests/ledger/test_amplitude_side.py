"""Amplitude's count next to the ledger's, through the Dashboard API of the local service."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from devkit.amplitude import AmplitudeService, Faults, ServiceThread
from forwarder.amplitude.dashboard import DashboardAPI, DashboardError
from forwarder.ledger.amplitude_side import (
    Comparison,
    amplitude_counts,
    compare,
    daily_counts,
    delivered_by_type_and_day,
    spans,
)
from forwarder.ledger.records import LedgerRecord
from forwarder.ledger.report import Window

TYPES = {"MOE_EMAIL_SENT": "Email Sent", "MOE_PUSH_CLICKED": "Notification Clicked"}
DAY0 = 1_795_824_000  # 2026-11-28T00:00Z


def test_days_are_asked_in_spans_that_skip_long_gaps_and_stay_short() -> None:
    assert spans(["2026-11-28", "2026-11-30", "2026-11-29"]) == [("2026-11-28", "2026-11-30")]
    assert spans(["2017-01-01", "2026-11-28"]) == [("2017-01-01", "2017-01-01"), ("2026-11-28", "2026-11-28")]
    daily = [(date(2026, 1, 1) + timedelta(days=n)).isoformat() for n in range(200)]
    assert [first for first, _ in spans(daily)] == ["2026-01-01", "2026-04-01", "2026-06-30"]


def test_verdicts() -> None:
    assert Comparison("E", "d", 10, 0, 10).verdict == "ok"
    # A window replay's events may already be in Amplitude: anything from 10 to 13 is right.
    assert Comparison("E", "d", 10, 3, 12).verdict == "ok (re-sent)"
    assert Comparison("E", "d", 10, 0, 7).verdict == "MISSING 3"
    assert Comparison("E", "d", 10, 1, 13).verdict == "EXTRA 2"
    # Dead letters re-sent were new to Amplitude: it must count them.
    assert Comparison("E", "d", 10, 2, 12, resent_dead_letters=2).verdict == "ok (re-sent)"
    assert Comparison("E", "d", 10, 2, 11, resent_dead_letters=2).verdict == "MISSING 1"
    assert not Comparison("E", "d", 10, 3, 12).differs
    assert Comparison("E", "d", 10, 0, 7).differs


def events(rng: random.Random, count: int) -> list[dict[str, object]]:
    out = []
    for n in range(count):
        code = rng.choice(sorted(TYPES))
        time_s = DAY0 + rng.randrange(3 * 86_400)
        out.append(
            {
                "event_type": TYPES[code],
                "user_id": f"customer-{n:05d}",
                "insert_id": f"ins-{n}",
                "time": time_s * 1000,
                "event_properties": {"$source": "MOENGAGE", "event_code": code},
            }
        )
    return out


def ledger_of(sent: list[dict[str, object]]) -> LedgerRecord:
    record = LedgerRecord("stream", "src", 0, 0, len(sent) - 1, event_types=dict(TYPES))
    for event in sent:
        props = event["event_properties"]
        assert isinstance(props, dict)
        assert isinstance(event["time"], int)
        record.outcomes.delivered(props["event_code"], 1, hour=event["time"] // 3_600_000, campaign="c")
    return record


@pytest.mark.parametrize("drop_rate", [0.0, 0.02])
def test_the_report_flags_exactly_the_days_where_amplitude_lost_accepted_events(drop_rate: float) -> None:
    random.seed(11)  # the local service draws its faults from the global generator
    service = AmplitudeService(api_keys={"key-1"}, secret_key="secret-1", faults=Faults(drop_silently_rate=drop_rate))
    runner = ServiceThread(service.app)
    url = runner.start()
    try:
        sent = events(random.Random(5), 1500)
        for start in range(0, len(sent), 500):
            answer = httpx.post(f"{url}/2/httpapi", json={"api_key": "key-1", "events": sent[start : start + 500]})
            assert answer.status_code == 200
        delivered = delivered_by_type_and_day([ledger_of(sent)], Window())

        async def ask() -> dict[tuple[str, str], int]:
            client = DashboardAPI(url, SecretStr("key-1"), SecretStr("secret-1"))
            try:
                return await amplitude_counts(
                    client, {t: {d for tt, d in delivered.live if tt == t} for t, _ in delivered.live}
                )
            finally:
                await client.aclose()

        rows = compare(delivered, asyncio.run(ask()))
    finally:
        runner.stop()
    lost = Counter(
        (event_type, datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d"))
        for _, event_type, ms in service.recorder.silently_dropped
    )
    assert len(rows) == 6  # 2 types x 3 days
    assert {(r.event_type, r.day): r.verdict for r in rows if r.differs} == {
        key: f"MISSING {n}" for key, n in lost.items()
    }
    assert bool(lost) == (drop_rate > 0)


def test_wrong_credentials_are_one_line_without_the_secret() -> None:
    service = AmplitudeService(api_keys={"key-1"}, secret_key="secret-1")
    runner = ServiceThread(service.app)
    url = runner.start()
    try:

        async def ask() -> None:
            client = DashboardAPI(url, SecretStr("key-1"), SecretStr("wrong-secret-9"))
            try:
                await daily_counts(client, "Email Sent", "2026-11-28", "2026-11-28")
            finally:
                await client.aclose()

        with pytest.raises(DashboardError) as caught:
            asyncio.run(ask())
    finally:
        runner.stop()
    assert "refused AMPLITUDE_API_KEY / AMPLITUDE_SECRET_KEY (HTTP 401)" in str(caught.value)
    assert "wrong-secret-9" not in str(caught.value)


def test_a_project_in_another_time_zone_matches_on_every_day_when_the_report_uses_its_zone() -> None:
    from zoneinfo import ZoneInfo

    service = AmplitudeService(api_keys={"key-1"}, secret_key="secret-1", timezone="America/Los_Angeles")
    runner = ServiceThread(service.app)
    url = runner.start()
    try:
        sent = events(random.Random(8), 900)
        answer = httpx.post(f"{url}/2/httpapi", json={"api_key": "key-1", "events": sent})
        assert answer.status_code == 200

        def rows_in(zone: ZoneInfo | None) -> list[Comparison]:
            delivered = delivered_by_type_and_day([ledger_of(sent)], Window(), zone or UTC)

            async def ask() -> dict[tuple[str, str], int]:
                client = DashboardAPI(url, SecretStr("key-1"), SecretStr("secret-1"))
                try:
                    days = {t: {d for tt, d in delivered.live if tt == t} for t, _ in delivered.live}
                    return await amplitude_counts(client, days)
                finally:
                    await client.aclose()

            return compare(delivered, asyncio.run(ask()))

        in_its_zone = rows_in(ZoneInfo("America/Los_Angeles"))
        in_utc = rows_in(None)
    finally:
        runner.stop()
    assert len(in_its_zone) == 8  # 2 types x 4 local days (three UTC days start and end on different local days)
    assert all(row.verdict == "ok" for row in in_its_zone)
    assert sum(row.delivered for row in in_its_zone) == 900
    assert any(row.verdict.startswith("MISSING") for row in in_utc)  # what a UTC report said of such a project
