"""The local MoEngage Cohort Sync API: auth, limits, known users only, asynchronous application."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from devkit.moengage import MoEngageService
from forwarder.cohorts.requests import bodies

AUTH = ("ws-1", "key-1")
HEADERS = {"MOE-APPKEY": "ws-1", "Content-Type": "application/json"}


def client(service: MoEngageService) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://moengage.local")


def body(action: str, *uids: str) -> bytes:
    ((raw, _),) = bodies(action, "c1", "[Amplitude] Buyers", [("uid", u) for u in uids])
    return raw


async def test_known_users_are_added_unknown_ones_ignored_and_removals_applied() -> None:
    service = MoEngageService("ws-1", "key-1")
    async with client(service) as http:
        await http.post("/_local/users", json={"uid": ["u1", "u2"]})
        answer = await http.post(
            "/v1/integrations/cohortsync", content=body("add_members", "u1", "u2", "u9"), auth=AUTH, headers=HEADERS
        )
        assert answer.status_code == 200
        assert answer.json()["status"] == "success"
        await http.post("/v1/integrations/cohortsync", content=body("remove_members", "u2"), auth=AUTH, headers=HEADERS)
        segments = (await http.get("/_local/segments")).json()
    assert segments == {"c1": {"name": "[Amplitude] Buyers", "members": ["uid:u1"]}}
    assert service.unknown_ignored == 1


async def test_acceptance_is_not_application() -> None:
    service = MoEngageService("ws-1", "key-1", apply_delay_s=0.05)
    async with client(service) as http:
        await http.post("/_local/users", json={"uid": ["u1"]})
        await http.post("/v1/integrations/cohortsync", content=body("add_members", "u1"), auth=AUTH, headers=HEADERS)
        assert (await http.get("/_local/segments")).json() == {}
        await asyncio.sleep(0.1)
        assert (await http.get("/_local/segments")).json()["c1"]["members"] == ["uid:u1"]


async def test_refusals_as_moengage_documents_them() -> None:
    service = MoEngageService("ws-1", "key-1", requests_per_minute=2)
    async with client(service) as http:
        sync = "/v1/integrations/cohortsync"
        ok = body("add_members", "u1")
        assert (await http.post(sync, content=ok, auth=("ws-1", "wrong"), headers=HEADERS)).status_code == 401
        no_appkey = {"Content-Type": "application/json"}
        assert (await http.post(sync, content=ok, auth=AUTH, headers=no_appkey)).status_code == 401
        text = {**HEADERS, "Content-Type": "text/plain"}
        assert (await http.post(sync, content=ok, auth=AUTH, headers=text)).status_code == 415
        # Two requests a minute: the refused content type was the first, this is the second, the next is over.
        assert (await http.post(sync, content=ok, auth=AUTH, headers=HEADERS)).status_code == 200
        throttled = await http.post(sync, content=ok, auth=AUTH, headers=HEADERS)
        assert throttled.status_code == 429
        assert int(throttled.headers["x-ratelimit-reset"]) >= 1
        assert throttled.json()["status"] == "fail"
    service = MoEngageService("ws-1", "key-1")
    async with client(service) as http:
        huge = orjson.dumps(
            {
                "action": "add_members",
                "partner": "amplitude",
                "parameters": {
                    "cohort_id": "c1",
                    "cohort_name": "n",
                    "members": [{"uid": "x" * 100} for _ in range(2000)],
                },
            }
        )
        assert (await http.post(sync, content=huge, auth=AUTH, headers=HEADERS)).status_code == 413
        bad_name = body("add_members", "u1").replace(b"[Amplitude] Buyers", b"Buyers: EU")
        assert (await http.post(sync, content=bad_name, auth=AUTH, headers=HEADERS)).status_code == 400
        assert (await http.post(sync, content=b"{", auth=AUTH, headers=HEADERS)).status_code == 400
        await http.post("/_local/faults", json={"error_rates": {"503": 1.0}})
        assert (await http.post(sync, content=ok, auth=AUTH, headers=HEADERS)).status_code == 503
