"""The local service answers as Amplitude documents it, on both paths, and records what it accepted."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from devkit.amplitude import AmplitudeService

KEY = "test-key"


def client(service: AmplitudeService) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://amp")


def ev(i: int = 0, **over: object) -> dict[str, object]:
    return {
        "event_type": "Email Sent",
        "user_id": f"customer-{i:04d}",
        "time": 1_700_000_000_000,
        "insert_id": f"i-{i}",
        **over,
    }


@pytest.mark.parametrize("path", ["/2/httpapi", "/batch"])
async def test_accepts_valid_events_with_amplitudes_success_body(path: str) -> None:
    service = AmplitudeService(api_keys={KEY})
    async with client(service) as http:
        response = await http.post(path, json={"api_key": KEY, "events": [ev(0), ev(1)]})
        stats = (await http.get("/_local/stats")).json()
        events = (await http.get("/_local/events")).json()["events"]
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 200
    assert body["events_ingested"] == 2
    assert body["payload_size_bytes"] > 0
    assert stats["events_accepted"] == 2
    assert stats["unique_insert_ids"] == 2
    assert [e["insert_id"] for e in events] == ["i-0", "i-1"]


async def test_duplicates_are_counted_by_insert_id() -> None:
    service = AmplitudeService(api_keys={KEY})
    async with client(service) as http:
        for _ in range(2):
            await http.post("/2/httpapi", json={"api_key": KEY, "events": [ev(0)]})
        stats = (await http.get("/_local/stats")).json()
    assert (stats["events_accepted"], stats["unique_insert_ids"], stats["duplicates"]) == (2, 1, 1)


async def test_invalid_events_get_400_with_indexes_and_nothing_is_ingested() -> None:
    service = AmplitudeService(api_keys={KEY})
    events = [
        ev(0),
        ev(1, time="yesterday"),
        {"user_id": "customer-2", "insert_id": "x"},
        ev(3, user_id="abc"),
        {"event_type": "E", "insert_id": "no-ids"},
    ]
    async with client(service) as http:
        response = await http.post("/2/httpapi", json={"api_key": KEY, "events": events})
    assert response.status_code == 400
    body = response.json()
    assert body["events_with_invalid_fields"] == {"time": [1]}
    assert body["events_with_missing_fields"] == {"event_type": [2], "user_id": [4]}
    assert body["events_with_invalid_id_lengths"] == {"user_id": [3]}
    assert service.recorder.accepted == 0


async def test_min_id_length_option_is_honoured() -> None:
    service = AmplitudeService(api_keys={KEY})
    async with client(service) as http:
        response = await http.post(
            "/2/httpapi", json={"api_key": KEY, "events": [ev(0, user_id="abc")], "options": {"min_id_length": 3}}
        )
    assert response.status_code == 200


async def test_key_and_request_level_errors() -> None:
    service = AmplitudeService(api_keys={KEY})
    async with client(service) as http:
        wrong = await http.post("/2/httpapi", json={"api_key": "nope", "events": [ev()]})
        missing = await http.post("/2/httpapi", json={"events": [ev()]})
        not_json = await http.post("/2/httpapi", content=b"{nope")
    assert wrong.status_code == 400
    assert wrong.json()["error"].startswith("Invalid API key")
    assert "nope" not in wrong.text
    assert missing.json()["missing_field"] == "api_key"
    assert not_json.status_code == 400


async def test_http_v2_limits_answer_413_where_batch_accepts() -> None:
    service = AmplitudeService(api_keys={KEY}, keep_events=False)
    many = [ev(i) for i in range(2001)]
    big = [ev(i, event_properties={"p": "x" * 1000}) for i in range(1100)]
    async with client(service) as http:
        too_many = await http.post("/2/httpapi", json={"api_key": KEY, "events": many})
        too_big = await http.post("/2/httpapi", content=orjson.dumps({"api_key": KEY, "events": big}))
        batch_big = await http.post("/batch", content=orjson.dumps({"api_key": KEY, "events": big}))
    assert (too_many.status_code, too_big.status_code, batch_big.status_code) == (413, 413, 200)


async def test_faults_can_be_set_at_runtime_for_an_outage_window() -> None:
    service = AmplitudeService(api_keys={KEY})
    async with client(service) as http:
        assert (await http.post("/_local/faults", json={"outage_s": 60})).status_code == 200
        during = await http.post("/2/httpapi", json={"api_key": KEY, "events": [ev()]})
        service.faults.outage_until = time.time() - 1
        after = await http.post("/2/httpapi", json={"api_key": KEY, "events": [ev()]})
        refused = await http.post("/_local/faults", json={"no_such_fault": 1})
    assert (during.status_code, after.status_code, refused.status_code) == (503, 200, 400)


async def test_throttling_and_daily_quota_answer_429_with_amplitudes_fields() -> None:
    service = AmplitudeService(api_keys={KEY})
    async with client(service) as http:
        await http.post("/_local/faults", json={"throttled_users": ["customer-0001"], "quota_devices": ["dev-99999"]})
        response = await http.post(
            "/2/httpapi",
            json={
                "api_key": KEY,
                "events": [ev(0), ev(1), {"event_type": "E", "device_id": "dev-99999", "insert_id": "q"}],
            },
        )
    body = response.json()
    assert response.status_code == 429
    assert body["throttled_users"] == {"customer-0001": 1}
    assert body["exceeded_daily_quota_devices"] == {"dev-99999": 1}
    assert body["throttled_events"] == [1, 2]


async def test_a_fixed_answer_delay_is_set_in_milliseconds_at_run_time() -> None:
    service = AmplitudeService()
    async with client(service) as http:
        answer = await http.post("/_local/faults", json={"latency_ms": 150})
        assert answer.status_code == 200
        assert service.faults.latency_s == 0.15
        refused = await http.post("/_local/faults", json={"latency_minutes": 1})
        assert refused.status_code == 400


async def test_the_dashboard_segmentation_endpoint_counts_unique_accepted_events_and_refuses_bad_questions() -> None:
    service = AmplitudeService(api_keys={"key-1"}, secret_key="secret-1")
    event = {
        "event_type": "Email Sent",
        "user_id": "customer-1",
        "insert_id": "i-1",
        "time": 1_795_873_510_000,  # 2026-11-28
        "event_properties": {"$source": "MOENGAGE"},
    }
    auth = ("key-1", "secret-1")
    query = {
        "e": orjson.dumps(
            {
                "event_type": "Email Sent",
                "filters": [
                    {
                        "subprop_type": "event",
                        "subprop_key": "$source",
                        "subprop_op": "is",
                        "subprop_value": ["MOENGAGE"],
                    }
                ],
            }
        ).decode(),
        "start": "20261127",
        "end": "20261128",
    }
    async with client(service) as http:
        for _ in range(2):  # the same insert_id twice: counted once
            assert (await http.post("/2/httpapi", json={"api_key": "key-1", "events": [event]})).status_code == 200
        answer = await http.get("/api/2/events/segmentation", params=query, auth=auth)
        assert answer.status_code == 200
        assert answer.json()["data"]["series"] == [[0, 1]]
        assert answer.json()["data"]["xValues"] == ["2026-11-27", "2026-11-28"]
        assert (await http.get("/api/2/events/segmentation", params=query)).status_code == 401
        wrong = await http.get("/api/2/events/segmentation", params=query, auth=("key-1", "nope"))
        assert wrong.status_code == 401
        for bad in ({**query, "e": "{"}, {**query, "m": "uniques"}, {**query, "start": "yesterday"}):
            refused = await http.get("/api/2/events/segmentation", params=bad, auth=auth)
            assert refused.status_code == 400
