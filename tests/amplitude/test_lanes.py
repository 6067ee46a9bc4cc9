"""Lanes: several requests in flight, one user's events in order, each caller's report in its own indexes."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

import pytest

from forwarder.amplitude.delivery import DeadLetter, DeliveryReport, FatalDeliveryError
from forwarder.amplitude.lanes import Lanes
from forwarder.core import Forwarded
from schemas.amplitude import AmplitudeEvent


def event(user: str, n: int) -> Forwarded:
    amplitude_event: AmplitudeEvent = {
        "event_type": "SMS Sent",
        "user_id": user,
        "time": n,
        "insert_id": f"{user}-{n}",
        "event_properties": {},
    }
    return Forwarded("SMS_SENT", amplitude_event, b"{}")


class SlowAmplitude:
    """Answers after ``latency_s``; records the order each user's events were sent in and the most requests
    in flight; rejects the events named in ``reject``, raises ``error`` when given."""

    def __init__(self, latency_s: float = 0.01, reject: frozenset[str] = frozenset()) -> None:
        self.latency_s = latency_s
        self.reject = reject
        self.sent: dict[str, list[int]] = defaultdict(list)
        self.in_flight = self.most_in_flight = self.requests = 0
        self.sizes: list[int] = []
        self.error: Exception | None = None

    async def deliver(self, items: Sequence[Forwarded]) -> DeliveryReport:
        self.in_flight += 1
        self.requests += 1
        self.sizes.append(len(items))
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency_s)
            if self.error is not None:
                raise self.error
            report = DeliveryReport()
            for index, item in enumerate(items):
                if item.event["insert_id"] in self.reject:
                    report.dead.append(DeadLetter(index, "invalid_field:x", 400, "", 1))
                    continue
                self.sent[item.event["user_id"]].append(item.event["time"])
                report.delivered.append(index)
            return report
        finally:
            self.in_flight -= 1


async def test_runs_share_lanes_users_stay_in_order_and_each_caller_gets_its_own_report() -> None:
    amplitude = SlowAmplitude(reject=frozenset({"u3-13"}))
    lanes = Lanes(amplitude, count=4, events_per_request=50)  # type: ignore[arg-type]
    runs = [[event(f"u{(r * 7 + i) % 10}", r * 100 + i) for i in range(40)] for r in range(6)]
    try:
        calls = [asyncio.ensure_future(lanes.deliver(run)) for run in runs]
        await asyncio.sleep(0.05)
        # Until the caller waits, a lane sends only once it holds half a request (25 of 50 events).
        sizes_before_flush = list(amplitude.sizes)
        lanes.flush()
        reports = await asyncio.gather(*calls)
    finally:
        await lanes.aclose()
    assert sizes_before_flush
    assert all(size >= 25 for size in sizes_before_flush)
    for run, report in zip(runs, reports, strict=True):
        assert sorted(report.delivered + [d.index for d in report.dead]) == list(range(len(run)))
        for letter in report.dead:
            assert run[letter.index].event["insert_id"] == "u3-13"
    assert sum(len(r.dead) for r in reports) == 1
    assert amplitude.most_in_flight > 1  # different users' requests were out at once
    assert amplitude.most_in_flight <= 4
    for times in amplitude.sent.values():
        assert times == sorted(times)  # one user's events in the order they were handed over
    assert amplitude.requests < 6 * 4  # a request carries events of several runs


async def test_a_fatal_answer_reaches_every_caller_whose_events_it_carried() -> None:
    amplitude = SlowAmplitude()
    amplitude.error = FatalDeliveryError("Amplitude refused the API key (HTTP 400)")
    lanes = Lanes(amplitude, count=2, events_per_request=10)  # type: ignore[arg-type]
    try:
        call = asyncio.ensure_future(lanes.deliver([event(f"u{i}", i) for i in range(8)]))
        await asyncio.sleep(0)
        lanes.flush()
        with pytest.raises(FatalDeliveryError):
            await call
    finally:
        await lanes.aclose()


async def test_one_lane_is_the_plain_deliverer() -> None:
    amplitude = SlowAmplitude()
    lanes = Lanes(amplitude, count=1, events_per_request=10)  # type: ignore[arg-type]
    report = await lanes.deliver([event("u1", i) for i in range(25)])
    assert report.delivered == list(range(25))
    assert amplitude.requests == 1
