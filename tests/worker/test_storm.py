"""A rebalance storm: three workers in one group, a slow Amplitude (so faust's stream buffers are full), and within
a couple of minutes two restarts back to back, a member paused past its session, a member that joins and leaves,
and SIGKILLs; on a real broker. Where faust drops fetched records around rebalances, if anywhere.

The oracle, in the Jepsen style, looks only at what is outside the workers: every offset of every partition of the
source and retry topics was processed (the ledger's ranges cover each partition from its first offset to its end
with no hole), every deliverable event reached Amplitude, the group's commits reach the end, and no offset was
reported lost. It prints what the guard repaired (its "records were skipped" lines across every worker's log),
the duplicates delivered, and the drain time.

Reproduce a run: ``STORM_SEED=<seed> .venv/bin/python -m pytest -s tests/worker/test_storm.py -k random``.
``STORM_GUARD=off`` runs the same storm with the offset guard only watching (``tests/worker/unguarded.py``):
what faust skips then is counted, not repaired, and the run reports instead of asserting delivery.
``STORM_WORKER_CODE=<checkout>`` runs another version's worker (a before/after), reporting too;
``STORM_EVENTS`` sets the traffic (default 40,000 events), ``STORM_LATENCY_S`` Amplitude's answer delay (0.15 s).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from devkit.kafka import free_port
from devkit.observe import wait_until_committed
from forwarder.core.keys import partition_key
from forwarder.kafka.admin import create_topics, partition_offsets
from forwarder.kafka.dead_letters import LOST_TO_RETENTION, header_map
from forwarder.kafka.ledger import read_ledger
from forwarder.ledger.holes import find_holes
from tests.conftest import ROOT, WorkerProcess
from tests.kafka_helpers import produce, read_all
from tests.worker.test_chaos import wait_until_answering
from tests.worker.test_chaos import waves as chaos_waves
from tests.worker.test_worker_delivery import worker_env
from tests.worker.test_worker_faults import sendable

pytestmark = pytest.mark.kafka

FIXED_SEEDS = [101, 202]
EVENTS = 40_000
WAVES = 10
WAVE_EVERY_S = 3.0
SESSION_S = 10.0
PAUSE_S = SESSION_S + 6  # past the session: the group moves the member's partitions while it sleeps
HOT_USER = "customer-hot-storm"
THROTTLE_UNTIL_S = 25.0
DRAIN_BOUND_S = 240.0
SKIP_LINE = "records were skipped by the consumer"
UNGUARDED_SKIP_LINE = "unguarded: the consumer skipped records"


@dataclass(frozen=True)
class Disturbance:
    at_s: float
    kind: str  # restart-twice, pause, join-leave, kill
    worker: int


def schedule(rng: random.Random) -> list[Disturbance]:
    kinds = ["restart-twice", "pause", "join-leave", "kill", "kill"]
    rng.shuffle(kinds)
    times = sorted(rng.uniform(5, 40) for _ in kinds)
    return [Disturbance(round(at, 1), kind, rng.randrange(3)) for at, kind in zip(times, kinds, strict=True)]


@pytest.fixture(params=[*FIXED_SEEDS, "random"])
def storm_seed(request: pytest.FixtureRequest) -> int:
    """The fixed seeds, so a failure repeats; and one drawn now (or ``STORM_SEED``), printed."""
    if request.param == "random":
        return int(os.environ.get("STORM_SEED") or random.SystemRandom().randrange(1_000_000))
    return int(request.param)


class Storm:
    def __init__(self, env: dict[str, str], logs: Path, guarded: bool, code: Path | None) -> None:
        """``code``: another checkout whose worker to run (``STORM_WORKER_CODE``, for a before/after)."""
        self.env = {**env, "PYTHONPATH": str(code)} if code is not None else env
        self.cwd = code or ROOT
        self.logs = logs
        self.module = "forwarder" if guarded else "tests.worker.unguarded"
        self.everyone: list[WorkerProcess] = []
        self.log: list[str] = []

    def start(self) -> WorkerProcess:
        env = {**self.env, "FORWARDER_WEB_PORT": str(free_port())}
        worker = WorkerProcess(env, self.logs / f"storm-worker-{len(self.everyone)}.log", self.module, self.cwd)
        self.everyone.append(worker.start())
        return worker

    def kill_all(self) -> None:
        for worker in self.everyone:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()

    def note(self, started: float, text: str) -> None:
        self.log.append(f"{time.monotonic() - started:5.1f}s {text}")


def test_rebalance_storm_every_offset_processed(kafka, amplitude, topic_names, tmp_path, storm_seed, request):
    guarded = os.environ.get("STORM_GUARD", "on") != "off"
    code = Path(os.environ["STORM_WORKER_CODE"]) if os.environ.get("STORM_WORKER_CODE") else None
    measuring = not guarded or code is not None
    events_total = int(os.environ.get("STORM_EVENTS") or EVENTS)
    seed = storm_seed
    print(
        f"\nstorm seed {seed} (reproduce: STORM_SEED={seed}), guard {'on' if guarded else 'off (watching only)'}"
        + (f", the worker of {code}" if code else "")
    )
    rng = random.Random(seed)
    plan = schedule(rng)
    waves = chaos_waves(seed, events_total, WAVES, HOT_USER, hot_per_wave=3)
    events = [e for wave in waves for body in wave for e in body["events"]]
    deliverable = sendable(events)

    service, url = amplitude
    # Amplitude's real round trip (or STORM_LATENCY_S): the stream buffers fill up
    service.faults.latency_s = float(os.environ.get("STORM_LATENCY_S") or 0.15)
    service.faults.throttled_users = {HOT_USER}  # parks its events in the retry topic
    source, dlq, retry, group = topic_names("src"), topic_names("dlq"), topic_names("retry"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 6, dlq: 1, retry: 3}))
    env = {
        **worker_env(kafka, url, source, dlq, group),
        "FORWARDER_RETRY_TOPIC": retry,
        "FORWARDER_SESSION_TIMEOUT_S": str(SESSION_S),
        "FORWARDER_BATCH_WINDOW_S": "0.2",
        "FORWARDER_SHUTDOWN_DEADLINE_S": "3",
    }
    storm = Storm(env, tmp_path, guarded, code)
    request.addfinalizer(storm.kill_all)  # a failed run leaves no worker running behind it
    workers = [storm.start() for _ in range(3)]
    started = time.monotonic()

    published = threading.Event()

    def publish() -> None:
        for n, wave in enumerate(waves):
            time.sleep(max(0.0, started + n * WAVE_EVERY_S - time.monotonic()))
            keys = [partition_key(body["events"][0]) for body in wave]
            asyncio.run(produce(kafka, source, [orjson.dumps(body) for body in wave], keys))
        published.set()

    threading.Thread(target=publish, daemon=True).start()

    def replace(index: int, sig: signal.Signals) -> None:
        victim = workers[index]
        assert victim.process is not None
        os.kill(victim.process.pid, sig)
        try:
            victim.process.wait(timeout=30)
        except Exception:  # a SIGTERM that did not end it in time: said, then ended
            storm.note(started, f"worker {index} ignored {sig.name} for 30 s")
            victim.process.kill()
            victim.process.wait()
        workers[index] = storm.start()

    paused: list[tuple[float, WorkerProcess]] = []
    joined: list[tuple[float, WorkerProcess]] = []
    pending = list(plan)
    throttled = True
    while pending or paused or joined or throttled:
        now_s = time.monotonic() - started
        if throttled and now_s >= THROTTLE_UNTIL_S:
            service.faults.throttled_users = set()
            throttled = False
            storm.note(started, "hot user no longer throttled")
        for until, worker in list(paused):
            if now_s >= until:
                assert worker.process is not None
                os.kill(worker.process.pid, signal.SIGCONT)
                paused.remove((until, worker))
                storm.note(started, "SIGCONT: the paused member comes back")
        for until, worker in list(joined):
            if now_s >= until:
                worker.stop(timeout_s=30)
                joined.remove((until, worker))
                storm.note(started, "the extra member leaves")
        if pending and now_s >= pending[0].at_s:
            step = pending.pop(0)
            awake = [i for i in range(3) if all(w is not workers[i] for _, w in paused)]  # never signal a sleeper
            index = step.worker if step.worker in awake else awake[0]
            if step.kind == "restart-twice":
                second = next((i for i in awake if i != index), index)
                replace(index, signal.SIGTERM)
                replace(second, signal.SIGTERM)
                storm.note(started, f"restarts back to back: worker {index}, then worker {second}")
            elif step.kind == "pause":
                victim = workers[index]
                assert victim.process is not None
                os.kill(victim.process.pid, signal.SIGSTOP)
                paused.append((now_s + PAUSE_S, victim))
                storm.note(started, f"SIGSTOP worker {index} for {PAUSE_S:.0f} s (session {SESSION_S:.0f} s)")
            elif step.kind == "join-leave":
                joined.append((now_s + rng.uniform(8, 15), storm.start()))
                storm.note(started, "an extra member joins")
            else:
                replace(index, signal.SIGKILL)
                storm.note(started, f"SIGKILL worker {index}, restarted")
        time.sleep(0.1)
    assert published.wait(timeout=120)
    last_disturbance_s = time.monotonic() - started

    drain_from = time.monotonic()
    alive = lambda: all(w.alive() for w in workers)  # noqa: E731
    timings: dict[str, float] = {}
    try:
        asyncio.run(wait_until_committed(kafka, source, group, DRAIN_BOUND_S, alive))
        remaining = DRAIN_BOUND_S - (time.monotonic() - drain_from)
        asyncio.run(wait_until_committed(kafka, retry, group, max(remaining, 1.0), alive))
        timings["drain_s"] = time.monotonic() - drain_from
    except (TimeoutError, RuntimeError) as exc:
        if not measuring:
            raise AssertionError(f"{exc}\n" + "\n".join(storm.log)) from exc
        storm.note(started, f"the commits did not reach the end: {exc}")
    for worker in workers:
        wait_until_answering(worker)
        assert worker.stop() == 0, worker.log()[-3000:]

    logs = "\n".join(w.log() for w in storm.everyone)
    gaps = logs.count(SKIP_LINE)
    skips_seen = logs.count(UNGUARDED_SKIP_LINE)
    accepted = set(service.recorder.by_insert_id)
    duplicates = service.recorder.accepted - len(accepted)
    records, _ = asyncio.run(read_ledger(kafka, env["FORWARDER_LEDGER_TOPIC"]))
    holes = []
    not_from_start = []
    for topic in (source, retry):
        ends, _ = asyncio.run(partition_offsets(kafka, topic))
        horizon = {(topic, p): end for p, end in ends.items() if end > 0}
        holes += find_holes(records, horizon, {topic})
        for key in horizon:
            firsts = [r.first_offset for r in records if (r.topic, r.partition) == key]
            if not firsts or min(firsts) != 0:
                not_from_start.append(key)
    lost_letters = [
        r for r in asyncio.run(read_all(kafka, dlq)) if header_map(r.headers).get("reason") == LOST_TO_RETENTION
    ]
    print("\n".join(storm.log))
    print(
        f"storm seed {seed}: {len(plan)} disturbances ({', '.join(d.kind for d in plan)}), "
        f"guard {'on' if guarded else 'off'}: gaps repaired {gaps}, skips seen unguarded {skips_seen}, "
        f"delivered {len(accepted & deliverable)}/{len(deliverable)}, duplicates {duplicates}, "
        f"holes {[h.describe() for h in holes]}, drain {timings.get('drain_s', float('nan')):.1f} s "
        f"after the last disturbance at {last_disturbance_s:.0f} s, {len(storm.everyone)} worker lives"
    )
    if measuring:
        return  # a measurement (without the guard, or of another checkout): reported above, nothing to assert
    assert not holes, "offsets never processed"
    assert not not_from_start, f"partitions whose ledger does not start at offset 0: {not_from_start}"
    missing = sorted(deliverable - accepted)
    assert not missing, f"{len(missing)} deliverable events never reached Amplitude, e.g. {missing[:5]}"
    assert not lost_letters, "no offset may be reported lost: nothing was deleted"
    assert "records deleted by Kafka" not in logs
