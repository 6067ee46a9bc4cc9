"""The MoEngage client against the local Cohort Sync API: 429 waits for the reset, 5xx retries, 401 stops."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from devkit.moengage import MoEngageFaults, MoEngageService
from forwarder.cohorts.moengage import MoEngageClient, MoEngageFatal, RateLimit
from forwarder.cohorts.requests import bodies


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make(service: MoEngageService, key: str = "key-1", per_minute: int = 300) -> tuple[MoEngageClient, Sleeps]:
    sleeps = Sleeps()
    client = MoEngageClient(
        "http://moengage.local",
        "ws-1",
        SecretStr(key),
        max_requests_per_minute=per_minute,
        sleep=sleeps,
        transport=httpx.ASGITransport(app=service.app),
    )
    return client, sleeps


def body(*uids: str) -> bytes:
    ((raw, _),) = bodies("add_members", "c1", "[Amplitude] Buyers", [("uid", u) for u in uids])
    return raw


async def test_a_429_waits_for_the_reset_the_server_gives_and_then_succeeds() -> None:
    service = MoEngageService("ws-1", "key-1", requests_per_minute=1)
    service.known |= {("uid", "u1"), ("uid", "u2")}
    client, sleeps = make(service, per_minute=300)  # configured above the server's limit: the 429 must teach it
    assert (await client.send(body("u1"))).accepted
    answers = []

    async def reopen(seconds: float) -> None:  # the minute passes
        sleeps.calls.append(seconds)
        service._recent.clear()
        client.rate._starts.clear()

    client._sleep = reopen
    answers.append(await client.send(body("u2")))
    await client.aclose()
    assert answers[0].accepted
    assert answers[0].attempts == 2
    assert service.responses[429] == 1
    assert sleeps.calls
    assert sleeps.calls[0] >= 0.5


async def test_5xx_is_retried_with_growing_backoff_until_accepted() -> None:
    service = MoEngageService("ws-1", "key-1")
    service.known.add(("uid", "u1"))
    service.faults = MoEngageFaults(error_rates={503: 1.0})
    client, sleeps = make(service)

    async def heal(seconds: float) -> None:
        sleeps.calls.append(seconds)
        if len(sleeps.calls) == 3:
            service.faults = MoEngageFaults()

    client._sleep = heal
    answer = await client.send(body("u1"))
    await client.aclose()
    assert answer.accepted
    assert answer.attempts == 4
    assert sleeps.calls == [1.0, 2.0, 4.0]
    assert service.segments["c1"].members == {("uid", "u1")}


async def test_a_wrong_key_stops_and_never_names_the_key() -> None:
    service = MoEngageService("ws-1", "key-1")
    client, _ = make(service, key="wrong-secret-key")
    with pytest.raises(MoEngageFatal) as raised:
        await client.send(body("u1"))
    await client.aclose()
    assert "wrong-secret-key" not in str(raised.value)
    assert "MOENGAGE_DATA_API_KEY" in str(raised.value)


async def test_a_bad_body_is_a_final_refusal_with_moengages_answer() -> None:
    service = MoEngageService("ws-1", "key-1")
    client, _ = make(service)
    answer = await client.send(b'{"action": "add_members"}')
    await client.aclose()
    assert answer.status == 400
    assert not answer.accepted
    assert '"status":"fail"' in answer.excerpt


async def test_the_rate_limit_spaces_requests_over_a_sliding_minute() -> None:
    now = [0.0]
    limit = RateLimit(2, clock=lambda: now[0])
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    for _ in range(5):
        await limit.acquire(sleep)
    # two at 0 s, two at 60 s, one at 120 s
    assert [round(w) for w in waits] == [60, 60]
    assert round(now[0]) == 120
