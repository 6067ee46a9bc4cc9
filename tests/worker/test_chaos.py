"""Chaos: two workers in one group while everything that can go wrong does, on a real broker.

Traffic arrives in waves for a minute while a seeded schedule SIGKILLs or SIGTERMs either worker (restarted at
once), Amplitude is down for 30 s, one hot user is throttled, 10 % of requests fail with 5xx, some events are
rejected as invalid and one message is not JSON. It holds when every deliverable event reached Amplitude, every
rejected one and the poison message are in the dead-letter topic with their reasons, nothing filtered or dropped
was sent, and the group's committed offsets reach the end of the source and retry topics within
``DRAIN_BOUND_S`` of the last disturbance.

Reproduce a run: ``CHAOS_SEED=<seed> .venv/bin/python -m pytest -s tests/worker/test_chaos.py`` (the seed fixes
the traffic and the schedule; the interleaving of requests is the machine's).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from dataclasses import dataclass

import httpx
import orjson
import pytest

from devkit.observe import wait_until_committed
from devkit.traffic import streams_requests
from forwarder.core.keys import partition_key
from forwarder.kafka.admin import create_topics
from forwarder.kafka.dead_letters import header_map
from tests.conftest import WorkerProcess
from tests.kafka_helpers import produce, read_all
from tests.worker.test_worker_delivery import worker_env
from tests.worker.test_worker_faults import sendable

pytestmark = pytest.mark.kafka

EVENTS = 30_000
WAVES = 20
WAVE_EVERY_S = 3.0
FAULTS = 6
OUTAGE_S = 30.0
THROTTLE_UNTIL_S = 45.0
HOT_USER = "customer-hot-chaos"
POISON = b'{"app_name": "Demo App", "events": [{"event_code": "SMS_SENT", "uid": '
# After the last disturbance: a dead member's session (10 s), a rebalance, one throttle pause (30 s) for the hot
# user's parked events, and the backlog.
DRAIN_BOUND_S = 120.0


@dataclass(frozen=True)
class Fault:
    at_s: float
    worker: int
    sig: signal.Signals


def schedule(rng: random.Random) -> tuple[list[Fault], float]:
    faults = sorted(
        (
            Fault(round(rng.uniform(3, 70), 1), rng.randrange(2), rng.choice([signal.SIGKILL, signal.SIGTERM]))
            for _ in range(FAULTS)
        ),
        key=lambda f: f.at_s,
    )
    return faults, round(rng.uniform(5, 35), 1)


def waves(
    seed: int, total: int = EVENTS, count: int = WAVES, hot_user: str = HOT_USER, hot_per_wave: int = 5
) -> list[list[dict]]:  # type: ignore[type-arg]
    """``total`` events in ``count`` waves of 100-event bodies, each wave with a body of the hot user's events."""
    bodies = list(streams_requests(total, per_request=100, seed=seed))
    per_wave = len(bodies) // count
    result = [bodies[i * per_wave : (i + 1) * per_wave] for i in range(count)]
    result[-1].extend(bodies[count * per_wave :])
    for n, wave in enumerate(result):
        hot = [
            {"event_code": "SMS_SENT", "event_uuid": f"hot-{n}-{i}", "uid": hot_user, "event_time": 1_700_000_000 + i}
            for i in range(hot_per_wave)
        ]
        wave.append({"app_name": "Demo App", "source": "MOENGAGE", "events": hot})
    return result


def wait_until_answering(worker: WorkerProcess, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{worker.web_port}/healthz", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"the worker never answered; log:\n{worker.log()[-3000:]}")


def test_chaos_two_workers_faults_outage_throttling_5xx_poison(kafka, amplitude, topic_names, worker_factory):
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"\nchaos seed {seed} (reproduce: CHAOS_SEED={seed})")
    rng = random.Random(seed)
    faults, outage_at_s = schedule(rng)
    traffic = waves(seed)
    events = [e for wave in traffic for body in wave for e in body["events"]]
    deliverable = sendable(events)
    rejected = set(rng.sample(sorted(u for u in deliverable if not u.startswith("hot-")), 20))

    service, url = amplitude
    source, dlq, retry, group = topic_names("src"), topic_names("dlq"), topic_names("retry"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 4, dlq: 1, retry: 2}))
    service.faults.error_rates = {500: 0.05, 502: 0.025, 503: 0.025}
    service.faults.throttled_users = {HOT_USER}
    service.faults.invalid_insert_ids = rejected
    env = {
        **worker_env(kafka, url, source, dlq, group),
        "FORWARDER_RETRY_TOPIC": retry,
        "FORWARDER_SHUTDOWN_DEADLINE_S": "3",
    }
    workers: list[WorkerProcess] = [worker_factory(**env).start(), worker_factory(**env).start()]
    everyone = list(workers)

    started = time.monotonic()
    published = threading.Event()

    def publish() -> None:
        for n, wave in enumerate(traffic):
            time.sleep(max(0.0, started + n * WAVE_EVERY_S - time.monotonic()))
            values = [orjson.dumps(b) for b in wave]
            keys = [partition_key(b["events"][0]) for b in wave]
            if n == WAVES // 4:
                values.append(POISON)
                keys.append(b"poison")
            asyncio.run(produce(kafka, source, values, keys))
        published.set()

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()

    outage_started = False
    throttle_lifted = False
    pending = list(faults)
    log: list[str] = []
    while pending or not throttle_lifted or not outage_started:
        now_s = time.monotonic() - started
        if not outage_started and now_s >= outage_at_s:
            service.faults.outage_until = time.time() + OUTAGE_S
            outage_started = True
            log.append(f"{now_s:5.1f}s Amplitude outage for {OUTAGE_S:.0f} s")
        if not throttle_lifted and now_s >= THROTTLE_UNTIL_S:
            service.faults.throttled_users = set()
            throttle_lifted = True
            log.append(f"{now_s:5.1f}s hot user no longer throttled")
        if pending and now_s >= pending[0].at_s:
            fault = pending.pop(0)
            victim = workers[fault.worker]
            assert victim.process is not None
            os.kill(victim.process.pid, fault.sig)
            try:
                victim.process.wait(timeout=30)
            except Exception:  # a SIGTERM that did not end it in time: the test says so and ends it
                log.append(f"{now_s:5.1f}s worker {fault.worker} ignored SIGTERM for 30 s")
                victim.process.kill()
                victim.process.wait()
            workers[fault.worker] = worker_factory(**env).start()
            everyone.append(workers[fault.worker])
            log.append(f"{now_s:5.1f}s {fault.sig.name} worker {fault.worker}, restarted")
        time.sleep(0.1)
    published.wait(timeout=120)
    last_fault_s = time.monotonic() - started
    last_disturbance_s = max(last_fault_s, outage_at_s + OUTAGE_S, THROTTLE_UNTIL_S, WAVES * WAVE_EVERY_S)
    while time.monotonic() - started < last_disturbance_s:
        time.sleep(0.1)

    drain_from = time.monotonic()
    alive = lambda: all(w.alive() for w in workers)  # noqa: E731
    asyncio.run(wait_until_committed(kafka, source, group, DRAIN_BOUND_S, alive))
    remaining = DRAIN_BOUND_S - (time.monotonic() - drain_from)
    asyncio.run(wait_until_committed(kafka, retry, group, max(remaining, 1.0), alive))
    drain_s = time.monotonic() - drain_from
    for worker in workers:
        # A worker restarted by the last fault may still be starting; let it come up, then stop it as usual.
        wait_until_answering(worker)
        assert worker.stop() == 0, worker.log()[-3000:]

    accepted = set(service.recorder.by_insert_id)
    expected = deliverable - rejected
    letters = asyncio.run(read_all(kafka, dlq))
    lettered = {}
    poison_reasons = set()
    for record in letters:
        headers = header_map(record.headers)
        if record.value == POISON:
            poison_reasons.add(headers["reason"])
        else:
            lettered[orjson.loads(record.value)["event_uuid"]] = headers["reason"]
    wrongly_sent = accepted - deliverable
    duplicates = service.recorder.accepted - len(accepted)
    print("\n".join(log))
    print(
        f"chaos seed {seed}: {len(faults)} signals + outage + throttling + 5xx + poison; "
        f"delivered {len(accepted & expected)}/{len(expected)}, "
        f"dead-lettered {len(set(lettered) & rejected)}/{len(rejected)} (+ poison: {sorted(poison_reasons)}), "
        f"wrongly sent {len(wrongly_sent)}, duplicates {duplicates}, "
        f"drain {drain_s:.1f} s after the last disturbance (bound {DRAIN_BOUND_S:.0f} s), "
        f"5xx answered {sum(v for k, v in service.recorder.responses.items() if k >= 500)}"
    )
    assert not wrongly_sent  # nothing filtered, dropped or rejected reached Amplitude as accepted
    assert accepted == expected  # every deliverable event arrived
    assert set(lettered) == rejected  # every rejected one is in the dead-letter topic ...
    assert set(lettered.values()) == {"invalid_field:event_properties"}  # ... with its reason
    assert poison_reasons == {"invalid_json"}
    assert len(log) >= FAULTS + 2
    # Rebalances and restarts move positions about; none of that is a loss, and none may be reported as one.
    assert not [w for w in everyone if "deleted by Kafka before they were read" in w.log()]
