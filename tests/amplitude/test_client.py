"""Every documented Amplitude response maps onto the right result, and the key never leaks."""

from __future__ import annotations

import httpx
import orjson
import pytest
from pydantic import SecretStr

from forwarder.amplitude.client import (
    Accepted,
    AmplitudeClient,
    BadRequest,
    InvalidKey,
    Rejected,
    Throttled,
    TooLarge,
    Unavailable,
)
from tests.helpers import forwarded

SECRET = "sk-very-secret-amplitude-key"


def client_answering(status: int, body: object, seen: list[httpx.Request] | None = None) -> AmplitudeClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return httpx.Response(status, content=content)

    return AmplitudeClient("https://amp.test/2/httpapi", SecretStr(SECRET), transport=httpx.MockTransport(handler))


async def send(client: AmplitudeClient, n: int = 3):
    try:
        return await client.send([f.encoded for f in forwarded(n)])
    finally:
        await client.aclose()


async def test_the_request_is_amplitudes_documented_body() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": 200})

    client = AmplitudeClient(
        "https://amp.test/2/httpapi", SecretStr(SECRET), min_id_length=3, transport=httpx.MockTransport(answer)
    )
    items = forwarded(2)
    assert await client.send([f.encoded for f in items]) == Accepted(200)
    await client.aclose()
    body = orjson.loads(seen[0].content)
    assert body == {"api_key": SECRET, "events": [f.event for f in items], "options": {"min_id_length": 3}}
    assert seen[0].headers["content-type"] == "application/json"
    assert SECRET not in str(seen[0].url)


async def test_400_with_indexes_names_the_rejected_events() -> None:
    body = {
        "code": 400,
        "error": "Request missing required field",
        "events_with_invalid_fields": {"time": [0]},
        "events_with_missing_fields": {"event_type": [2]},
        "events_with_invalid_id_lengths": {"user_id": [1]},
        "silenced_events": [7],
    }
    result = await send(client_answering(400, body))
    assert isinstance(result, Rejected)
    assert result.reasons == {0: "invalid_field:time", 1: "invalid_id_length:user_id", 2: "missing_field:event_type"}


@pytest.mark.parametrize(
    "body",
    [{"code": 400, "error": "Invalid API key: abc"}, {"code": 400, "error": "missing", "missing_field": "api_key"}],
)
async def test_invalid_or_missing_key_is_fatal(body: dict[str, object]) -> None:
    assert isinstance(await send(client_answering(400, body)), InvalidKey)


async def test_400_naming_no_event_is_a_bad_request() -> None:
    assert isinstance(await send(client_answering(400, b"<html>oops</html>")), BadRequest)


async def test_413_is_too_large() -> None:
    assert await send(client_answering(413, {"code": 413, "error": "Payload too large"})) == TooLarge(413)


async def test_429_lists_throttled_events_and_quota_ids() -> None:
    body = {
        "code": 429,
        "eps_threshold": 30,
        "throttled_users": {"customer-00001": 40},
        "throttled_events": [1],
        "exceeded_daily_quota_users": {"customer-00002": 1},
    }
    result = await send(client_answering(429, body))
    assert isinstance(result, Throttled)
    assert result.throttled == frozenset({1})
    assert result.quota_users == frozenset({"customer-00002"})
    assert result.pause_s == 30


@pytest.mark.parametrize("status", [500, 502, 503, 504, 403])
async def test_server_errors_are_transient(status: int) -> None:
    result = await send(client_answering(status, {"code": status}))
    assert isinstance(result, Unavailable)
    assert result.status == status


async def test_timeouts_and_connection_errors_are_transient_and_do_not_show_the_key() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler in (refuse, hang):
        client = AmplitudeClient(
            "https://amp.test/2/httpapi", SecretStr(SECRET), transport=httpx.MockTransport(handler)
        )
        result = await send(client)
        assert isinstance(result, Unavailable)
        assert result.status is None
        assert SECRET not in repr(result)
