"""A route's health: parked after failing long enough, draining once it answers, flowing once nothing parked is
left to overtake; and the deliverer's part: a refused key is one more failure, the rest handed back when parked."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from devkit.amplitude import AmplitudeService, Faults
from forwarder.amplitude.client import AmplitudeClient
from forwarder.amplitude.delivery import Deliverer
from forwarder.amplitude.limits import HTTP_V2
from forwarder.amplitude.route_health import MAX_PARK_S, RouteHealth
from forwarder.core.outcomes import Forwarded
from tests.helpers import ManualClock


def test_parked_after_failing_for_the_delay_then_draining_then_flowing() -> None:
    clock = ManualClock()
    health = RouteHealth("eu", park_after_s=60, clock=clock)
    health.failed()
    clock.now = 59
    assert not health.should_park()
    clock.now = 60
    assert health.should_park()
    health.park()
    assert health.parked
    assert health.delay_s() == 60
    health.park()  # parked again without an answer between: the same park
    assert health.delay_s() == 60
    health.answered()
    assert health.state == "draining"
    assert health.delay_s() == 0  # new events only queue up behind the parked ones
    mark = health.stillness()
    health.parking()  # a run decides to park while the retry topic's offsets are read
    health.drained(mark)
    assert health.state == "draining"
    health.written()
    health.drained(health.stillness())
    assert not health.parked


def test_the_park_delay_doubles_up_to_ten_minutes() -> None:
    health = RouteHealth("eu", park_after_s=60, clock=ManualClock())
    delays = []
    for _ in range(6):
        health.park()
        delays.append(health.delay_s())
        health.answered()
        health.failed()
    assert delays == [60, 120, 240, 480, MAX_PARK_S, MAX_PARK_S]


async def test_a_refused_key_parks_the_route_and_hands_every_event_back() -> None:
    service = AmplitudeService(faults=Faults(invalid_key=True))  # the local project refuses every key
    health = RouteHealth("eu", park_after_s=0, clock=ManualClock())
    client = AmplitudeClient(
        "http://amplitude.local/2/httpapi", SecretStr("k"), transport=httpx.ASGITransport(app=service.app)
    )

    async def no_wait(_seconds: float) -> None:
        return None

    deliverer = Deliverer(client, HTTP_V2, no_wait, health=health, park=True)
    items = [
        Forwarded(
            "C", {"event_type": "E", "time": 1, "insert_id": str(n), "event_properties": {}, "user_id": "user-1"}, b"{}"
        )
        for n in range(3)
    ]
    report = await deliverer.deliver(items)
    assert sorted(report.deferred) == [0, 1, 2]
    assert report.defer_reason == "route_parked"
    assert health.state == "parked"
    await client.aclose()
