"""The delivery policy against the local Amplitude service: final outcomes for all, retries without loss."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from devkit.amplitude import AmplitudeService, Faults
from forwarder.amplitude.client import AmplitudeClient
from forwarder.amplitude.delivery import Backoff, Deliverer, FatalDeliveryError
from forwarder.amplitude.limits import HTTP_V2, ApiLimits
from tests.helpers import forwarded

KEY = "test-key"


class Clock:
    """Records the pauses the policy asks for instead of sleeping through them."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def wait(self, seconds: float) -> bool:
        self.pauses.append(seconds)
        return True


def deliverer_for(service: AmplitudeService, clock: Clock, limits: ApiLimits = HTTP_V2, key: str = KEY) -> Deliverer:
    transport = httpx.ASGITransport(app=service.app)
    client = AmplitudeClient("http://amplitude.local/2/httpapi", SecretStr(key), transport=transport)
    return Deliverer(client, limits, clock.wait, Backoff(base_s=0.01, cap_s=0.05))


async def test_everything_accepted_is_delivered_in_requests_within_limits() -> None:
    service = AmplitudeService(api_keys={KEY})
    items = forwarded(2500)
    report = await deliverer_for(service, Clock()).deliver(items)
    assert sorted(report.delivered) == list(range(2500))
    assert report.dead == []
    assert service.recorder.accepted == 2500
    assert service.recorder.requests == 3  # 1000 + 1000 + 500: HTTP V2 takes fewer than 2000 per request


async def test_transient_failures_are_retried_until_delivered() -> None:
    service = AmplitudeService(api_keys={KEY}, faults=Faults(error_rates={500: 0.3, 502: 0.1, 503: 0.2, 504: 0.1}))
    clock = Clock()
    report = await deliverer_for(service, clock, limits=ApiLimits(max_events=10, max_body_bytes=10**6)).deliver(
        forwarded(300)
    )
    assert sorted(report.delivered) == list(range(300))
    assert set(service.recorder.by_insert_id) == {f"ev-customer-{i}" for i in range(300)}
    assert report.retries > 0
    assert len(clock.pauses) == report.retries


async def test_rejected_events_are_dead_lettered_and_the_rest_delivered() -> None:
    items = forwarded(10)
    bad = {items[3].event["insert_id"], items[7].event["insert_id"]}
    service = AmplitudeService(api_keys={KEY}, faults=Faults(invalid_insert_ids=bad))
    report = await deliverer_for(service, Clock()).deliver(items)
    assert sorted(report.delivered) == [0, 1, 2, 4, 5, 6, 8, 9]
    assert [(d.index, d.reason, d.status) for d in report.dead] == [
        (3, "invalid_field:event_properties", 400),
        (7, "invalid_field:event_properties", 400),
    ]
    assert "events_with_invalid_fields" in report.dead[0].excerpt


async def test_an_event_too_large_alone_is_dead_lettered_and_its_neighbours_go_through() -> None:
    items = forwarded(5)
    items[2] = forwarded(1, uid_prefix="big", event_attributes={f"k{i}": "v" * 1000 for i in range(1100)})[0]
    service = AmplitudeService(api_keys={KEY})
    # The client-side limit is generous here so the server's 413 is what splits the request.
    report = await deliverer_for(service, Clock(), limits=ApiLimits(1000, 50_000_000)).deliver(items)
    assert sorted(report.delivered) == [0, 1, 3, 4]
    assert [(d.index, d.reason) for d in report.dead] == [(2, "too_large")]


async def test_throttled_users_wait_the_documented_pause_and_quota_users_are_dead_lettered() -> None:
    items = forwarded(6)
    service = AmplitudeService(
        api_keys={KEY}, faults=Faults(throttled_users={"customer-00001"}, quota_users={"customer-00004"})
    )
    clock = Clock()
    deliverer = deliverer_for(service, clock)

    original = service.faults

    async def lift_after_first_pause(seconds: float) -> bool:
        clock.pauses.append(seconds)
        service.faults = Faults(quota_users=original.quota_users)
        return True

    deliverer._wait = lift_after_first_pause
    report = await deliverer.deliver(items)
    assert sorted(report.delivered) == [0, 1, 2, 3, 5]
    assert [(d.index, d.reason) for d in report.dead] == [(4, "daily_quota_exceeded")]
    assert clock.pauses == [30.0]
    assert report.throttled == 1


async def test_an_invalid_key_is_fatal_and_delivers_nothing() -> None:
    service = AmplitudeService(api_keys={"the-right-key"})
    with pytest.raises(FatalDeliveryError, match="refused the API key") as caught:
        await deliverer_for(service, Clock(), key="wrong-key-123").deliver(forwarded(3))
    assert "wrong-key-123" not in str(caught.value)
    assert service.recorder.accepted == 0
