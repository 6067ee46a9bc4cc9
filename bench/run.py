"""``make bench``: the worker against the read ceiling and the official SDK, measured side by side in one run.

On the local broker (or KAFKA_BOOTSTRAP_SERVERS) it fills a 4-partition topic with realistic MoEngage traffic
(Streams bodies of 100 events, as MoEngage sends them, plus single-event records) and measures:

  (a) ceiling: a bare aiokafka consumer that reads and JSON-parses the topic, nothing else;
  (b) worker:  ``forwarder worker`` end to end into the local Amplitude service (a separate process);
  (c) sdk:     an aiokafka loop handing each event to the official ``amplitude-analytics`` SDK, pointed at
               the same local service: what a user would write instead;
  (d) floor:   the worker's faust app (same transport, same batch size) with an agent that only acks: what
               the framework costs before the forwarder does any work;

then the worker's end-to-end latency at half its measured maximum rate, two workers against one, and the
worker's peak RSS with a large backlog. Every process is on loopback; every loop is bounded.
The last line printed is a JSON summary; a PNG chart is written to ``bench/out/``.

    .venv/bin/python -m bench.run [--events 200000] [--backlog 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from tqdm import tqdm

from devkit.environment import worker_environment
from devkit.kafka import broker_for, free_port, stop_pid
from devkit.observe import wait_until_committed
from devkit.traffic import make_event, streams_requests
from forwarder.core.keys import partition_key
from forwarder.kafka.admin import create_topics
from forwarder.settings import WorkerPart

OUT = Path(__file__).resolve().parent / "out"
API_KEY = "bench-key"
PARTITIONS = 4
# Amplitude's real answer time, assumed: a cross-region HTTPS round trip plus its processing (docs/performance.md).
ROUND_TRIP_MS = 150.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- traffic ------------------------------------------------------------------------------------------------


def traffic(total: int, seed: int, apps: Sequence[str] = ("Demo App",)) -> Iterator[tuple[bytes, bytes]]:
    """(key, value): 90 % of the events in Streams bodies of 100 (of ``apps`` in turn), 10 % as single-event
    records."""
    import random

    bodies_events = total * 9 // 10
    for body in streams_requests(bodies_events, per_request=100, seed=seed, apps=apps):
        yield partition_key(body["events"][0]), orjson.dumps(body)
    rng = random.Random(seed + 1)
    for index in range(total - bodies_events):
        event = make_event(rng, bodies_events + index)
        yield partition_key(event), orjson.dumps(event)


async def produce(
    servers: str, topic: str, records: Iterator[tuple[bytes, bytes]], total_events: int, label: str
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=servers,
        acks="all",
        linger_ms=20,
        max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        pending = []
        with tqdm(total=total_events, desc=label, unit="ev", file=sys.stderr) as bar:
            for key, value in records:
                pending.append(await producer.send(topic, value, key=key))
                bar.update(value.count(b'"event_code"'))
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
    finally:
        await producer.stop()


def sendable(value: bytes) -> list[str]:
    """The insert_ids the forwarder (and a careful peer) would deliver from one record."""
    from forwarder.core import Forwarded, MappingRules, process_message

    return [o.event["insert_id"] for o in process_message(value, MappingRules()).outcomes if isinstance(o, Forwarded)]


# -- processes ----------------------------------------------------------------------------------------------


@dataclass
class Measured:
    events: int
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    # CPU and events from the first event Amplitude accepted to the end: the per-event cost without the process's
    # start-up (imports, joining the group), as the floor is measured. None: not sampled.
    steady_cpu_s: float | None = None
    steady_events: int | None = None

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_s_per_million(self) -> float:
        return self.cpu_s / self.events * 1e6 if self.events else 0.0

    @property
    def steady_cpu_s_per_million(self) -> float:
        if self.steady_cpu_s is None or not self.steady_events:
            return self.cpu_s_per_million
        return self.steady_cpu_s / self.steady_events * 1e6

    @property
    def startup_cpu_s(self) -> float:
        return self.cpu_s - self.steady_cpu_s if self.steady_cpu_s is not None else 0.0


class FirstAccepted:
    """The CPU of some processes and the events Amplitude had accepted, read together at the first accepted event:
    what came before is start-up, what comes after is the steady per-event cost."""

    def __init__(self, handles: Sequence[psutil.Process]) -> None:
        self._handles = handles
        self.cpu_s: float | None = None
        self.events = 0

    def look(self, accepted: int) -> None:
        if self.cpu_s is None and accepted > 0:
            self.cpu_s = sum(cpu_seconds(h) for h in self._handles)
            self.events = accepted

    def measured(self, events: int, seconds: float, cpu_s: float, rss: float) -> Measured:
        if self.cpu_s is None:
            return Measured(events, seconds, cpu_s, rss)
        return Measured(events, seconds, cpu_s, rss, cpu_s - self.cpu_s, events - self.events)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set, as the kernel counted it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class AmplitudeProcess:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "forwarder", "amplitude-local", "--port", str(self.port), "--no-keep-events"],
            # stdout is the benchmark's JSON line only (`make bench | tail -1 | jq .`): children keep off it.
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/_local/stats", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the local Amplitude service did not start")

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/_local/stats", timeout=10).json())

    def reset(self) -> None:
        httpx.post(self.url + "/_local/reset", timeout=10)

    def answer_after(self, latency_ms: float) -> None:
        """A fixed delay before every answer: Amplitude's real round trip, which the local service lacks."""
        httpx.post(self.url + "/_local/faults", json={"latency_ms": latency_ms}, timeout=10).raise_for_status()

    def wait_for(
        self, accepted: int, timeout_s: float, alive: Any = None, first: FirstAccepted | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if first is not None:
                first.look(stats["unique_insert_ids"])
            if stats["unique_insert_ids"] >= accepted:
                return stats
            if time.monotonic() > deadline or (alive is not None and not alive()):
                raise RuntimeError(f"only {stats['unique_insert_ids']} of {accepted} events arrived")
            time.sleep(0.2 if first is None or first.cpu_s is not None else 0.02)

    def stop(self) -> None:
        stop_pid(self.process.pid, 10, self.process)


def start_workers(
    count: int, servers: str, topic: str, group: str, amplitude_url: str
) -> list[subprocess.Popen[bytes]]:
    workers = []
    for _ in range(count):
        env = worker_environment(
            servers,
            amplitude_url,
            topic,
            group,
            topic + "-dlq",
            API_KEY,
            FORWARDER_RETRY_TOPIC=topic + "-retry",
            FORWARDER_WEB_PORT=str(free_port()),
            FORWARDER_LOG_LEVEL="WARNING",
            FORWARDER_SESSION_TIMEOUT_S="10",
        )
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "forwarder", "worker"],
                env=env,
                stdout=subprocess.DEVNULL,  # faust's start-up spinner writes escape codes to stdout
                stderr=subprocess.DEVNULL,
            )
        )
    return workers


def run_workers(
    count: int, servers: str, topic: str, group: str, amplitude: AmplitudeProcess, expected: int, timeout_s: float = 600
) -> Measured:
    amplitude.reset()
    workers = start_workers(count, servers, topic, group, amplitude.url)
    handles = [psutil.Process(w.pid) for w in workers]
    first = FirstAccepted(handles)
    try:
        stats = amplitude.wait_for(expected, timeout_s, lambda: all(w.poll() is None for w in workers), first)
        asyncio.run(wait_until_committed(servers, topic, group, timeout_s))
        cpu = sum(cpu_seconds(h) for h in handles)
        rss = max(peak_rss_mb(w.pid) for w in workers)
    finally:
        for worker in workers:
            stop_pid(worker.pid, 30, worker)
    seconds = stats["last_accepted_at"] - stats["first_accepted_at"]
    return first.measured(stats["unique_insert_ids"], seconds, cpu, rss)


# -- (a) the read ceiling -----------------------------------------------------------------------------------


async def read_ceiling(servers: str, topic: str, total_events: int) -> Measured:
    process = psutil.Process()
    cpu_before = cpu_seconds(process)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    events = 0
    started = None
    try:
        while events < total_events:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    started = started or time.perf_counter()
                    document = orjson.loads(record.value)
                    events += len(document["events"]) if "events" in document else 1
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()
    return Measured(events, elapsed, cpu_seconds(process) - cpu_before, 0.0)


# -- (c) the peer: the official SDK -------------------------------------------------------------------------

PEER = r"""
import sys, time, orjson, asyncio
from aiokafka import AIOKafkaConsumer
from amplitude import Amplitude, BaseEvent, Config

servers, topic, url, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = Amplitude("bench-key", Config(server_url=url + "/2/httpapi"))

def track(e):
    attrs = e.get("event_attributes") or {}
    user = e.get("user_attributes") or {}
    uid = e.get("uid")
    client.track(BaseEvent(
        event_type=e.get("event_name") or e.get("event_code"),
        user_id=str(uid) if uid is not None else None,
        device_id=user.get("moe_anonymous_id"),
        time=int(e["event_time"]) * 1000,
        insert_id=e.get("event_uuid"),
        event_properties={**attrs, "$source": "MOENGAGE", "event_code": e.get("event_code")},
    ))

async def main():
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    seen = 0
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    doc = orjson.loads(r.value)
                    for e in (doc["events"] if "events" in doc else [doc]):
                        seen += 1
                        if e.get("uid") is None and not (e.get("user_attributes") or {}).get("moe_anonymous_id"):
                            continue
                        track(e)
    finally:
        await consumer.stop()

asyncio.run(main())
client.shutdown()
"""


def run_peer(servers: str, topic: str, amplitude: AmplitudeProcess, total_events: int, expected: int) -> Measured:
    amplitude.reset()
    peer = subprocess.Popen(
        [sys.executable, "-c", PEER, servers, topic, amplitude.url, str(total_events)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    handle = psutil.Process(peer.pid)
    first = FirstAccepted([handle])
    cpu = 0.0
    try:
        deadline = time.monotonic() + 900
        while peer.poll() is None and time.monotonic() < deadline:
            cpu = cpu_seconds(handle)
            rss = peak_rss_mb(peer.pid)
            if first.cpu_s is None:
                first.look(amplitude.stats()["unique_insert_ids"])
            time.sleep(0.2 if first.cpu_s is not None else 0.02)
    finally:
        if peer.poll() is None:
            stop_pid(peer.pid, 10, peer)
    stats = amplitude.stats()
    seconds = (stats["last_accepted_at"] or 0) - (stats["first_accepted_at"] or 0)
    return first.measured(stats["unique_insert_ids"], seconds, cpu, rss)


# -- (d) the framework's floor: faust reading the topic and doing nothing else --------------------------------

FLOOR = r"""
import json, os, sys, tempfile, time
import mode
from forwarder.worker.app import ForwarderApp

servers, topic, total, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
batch, window = int(sys.argv[5]), float(sys.argv[6])
sys.argv = [sys.argv[0], "worker", "-l", "warn"]
app = ForwarderApp(
    f"bench-floor-{time.time()}", broker=f"kafka://{servers}", value_serializer="raw", key_serializer="raw",
    agent_supervisor=mode.CrashingSupervisor, consumer_auto_offset_reset="earliest", stream_wait_empty=False,
    topic_disable_leader=True, web_enabled=False, stream_buffer_maxsize=2 * batch,
    datadir=os.path.join(tempfile.gettempdir(), "forwarder-bench-floor"),
)
state = {"events": 0}

@app.agent(app.topic(topic, value_type=bytes, key_type=bytes), concurrency=1)
async def floor(stream):
    async for taken in stream.noack_take(batch, within=window):
        if "started" not in state:
            state["started"], state["cpu"] = time.perf_counter(), time.process_time()
        for event in taken:
            state["events"] += event.message.value.count(b'"event_code"')
            event.ack()
        if state["events"] >= total:
            seconds, cpu = time.perf_counter() - state["started"], time.process_time() - state["cpu"]
            with open(out, "w") as f:
                json.dump({"events": state["events"], "seconds": seconds, "cpu_s": cpu}, f)
            os._exit(0)

app.main()
"""


def faust_floor(servers: str, topic: str, total_events: int) -> Measured:
    """The worker's faust app (same transport, same batch size) with an agent that only acks."""
    defaults = WorkerPart.model_validate({})  # the worker's own defaults: the floor batches as the worker does
    batch, window = defaults.batch_max_messages, defaults.batch_window_s
    out = OUT / "floor.json"
    out.unlink(missing_ok=True)
    floor = subprocess.Popen(
        [sys.executable, "-c", FLOOR, servers, topic, str(total_events), str(out), str(batch), str(window)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        floor.wait(timeout=300)
    finally:
        if floor.poll() is None:
            stop_pid(floor.pid, 10, floor)
    result = json.loads(out.read_text())
    return Measured(result["events"], result["seconds"], result["cpu_s"], 0.0)


# -- latency at half load -----------------------------------------------------------------------------------


def latency_at(
    rate_eps: float, duration_s: float, servers: str, topic: str, amplitude: AmplitudeProcess, group: str
) -> tuple[float, float, int]:
    """Produces single Streams bodies at ``rate_eps`` to a running worker; returns (p50, p99, events)."""
    import random

    amplitude.reset()
    workers = start_workers(1, servers, topic, group, amplitude.url)
    sent_at: dict[str, float] = {}
    rng = random.Random(99)
    try:
        # The worker joins its group on an empty topic first: latency is measured in steady state.
        warm = make_event(rng, 0)
        warm["uid"] = "customer-warm-up"
        asyncio.run(produce(servers, topic, iter([(b"w", orjson.dumps(warm))]), 1, "warm-up"))
        amplitude.wait_for(1, 120, lambda: workers[0].poll() is None)

        async def paced() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
            await producer.start()
            try:
                per_message = 10
                interval = per_message / rate_eps
                started = time.perf_counter()
                index = 1
                while time.perf_counter() - started < duration_s:
                    events = [make_event(rng, index + i) for i in range(per_message)]
                    events = [e for e in events if e["event_code"] != "ADD_TO_CART" and e["uid"] and e["uid"] != "u1"]
                    index += per_message
                    now = time.time()
                    for event in events:
                        sent_at[event["event_uuid"]] = now
                    await producer.send(topic, orjson.dumps({"events": events}), key=partition_key(events[0]))
                    target = started + (index / per_message) * interval
                    await asyncio.sleep(max(0.0, target - time.perf_counter()))
                await producer.flush()
            finally:
                await producer.stop()

        asyncio.run(paced())
        amplitude.wait_for(len(sent_at) + 1, 120, lambda: workers[0].poll() is None)
        arrivals = httpx.get(amplitude.url + "/_local/arrivals", timeout=30).json()
    finally:
        stop_pid(workers[0].pid, 30, workers[0])
    delays = sorted(arrivals[u] - t for u, t in sent_at.items() if u in arrivals)
    return statistics.median(delays), delays[int(len(delays) * 0.99) - 1], len(delays)


# -- the run ------------------------------------------------------------------------------------------------


def chart(results: dict[str, Measured], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["ceiling\n(read + parse)", "faust floor\n(read + ack)", "forwarder\nworker", "official\nSDK peer"]
    values = [results["ceiling"].eps, results["floor"].eps, results["worker"].eps, results["sdk"].eps]
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(names, values, color=["#999999", "#c7c7c7", "#1f77b4", "#ff7f0e"])
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values])
    ax.set_ylabel("events per second")
    ax.set_title("MoEngage -> Amplitude, one 2-core machine\n(same topic, same local Amplitude service)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--backlog", type=int, default=1_000_000, help="events for the peak-RSS run (0: skip)")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    run_id = str(int(time.time()))
    topic = f"bench-{run_id}"

    with broker_for("bench") as servers:
        asyncio.run(create_topics(servers, {topic: PARTITIONS, topic + "-dlq": 1, topic + "-retry": 1}))
        records = list(traffic(args.events, seed=1))
        expected = sum(len(sendable(value)) for _, value in records)
        asyncio.run(produce(servers, topic, iter(records), args.events, "filling the topic"))
        del records
        amplitude = AmplitudeProcess()
        try:
            say("(a) read ceiling ...")
            ceiling = asyncio.run(read_ceiling(servers, topic, args.events))
            say("(b) worker end to end ...")
            worker = run_workers(1, servers, topic, f"bench-one-{run_id}", amplitude, expected)
            say("(d) the framework's floor: faust reading the topic, acking, nothing else ...")
            floor = faust_floor(servers, topic, args.events)
            say("(c) the official SDK peer ...")
            sdk = run_peer(servers, topic, amplitude, args.events, expected)
            say(f"at Amplitude's round trip ({ROUND_TRIP_MS:.0f} ms per answer): the worker, then the SDK peer ...")
            amplitude.answer_after(ROUND_TRIP_MS)
            worker_slow = run_workers(1, servers, topic, f"bench-slow-{run_id}", amplitude, expected)
            sdk_slow = run_peer(servers, topic, amplitude, args.events, expected)
            amplitude.answer_after(0)
            say("scale: two workers on the 4-partition topic ...")
            two = run_workers(2, servers, topic, f"bench-two-{run_id}", amplitude, expected)
            say(f"latency at half the worker's rate ({worker.eps / 2:,.0f} events/s) ...")
            latency_topic = topic + "-latency"
            asyncio.run(create_topics(servers, {latency_topic: PARTITIONS}))
            p50, p99, measured = latency_at(
                worker.eps / 2, args.latency_seconds, servers, latency_topic, amplitude, f"bench-lat-{run_id}"
            )
            backlog = None
            if args.backlog:
                say(f"peak RSS with a {args.backlog:,}-event backlog ...")
                backlog_topic = topic + "-backlog"
                asyncio.run(
                    create_topics(
                        servers, {backlog_topic: PARTITIONS, backlog_topic + "-dlq": 1, backlog_topic + "-retry": 1}
                    )
                )
                backlog_expected = 0

                def counted() -> Iterator[tuple[bytes, bytes]]:
                    nonlocal backlog_expected
                    for key, value in traffic(args.backlog, seed=2):
                        backlog_expected += len(sendable(value))
                        yield key, value

                asyncio.run(produce(servers, backlog_topic, counted(), args.backlog, "filling the backlog"))
                backlog = run_workers(
                    1, servers, backlog_topic, f"bench-backlog-{run_id}", amplitude, backlog_expected, timeout_s=1800
                )
        finally:
            amplitude.stop()

    results = {"ceiling": ceiling, "floor": floor, "worker": worker, "sdk": sdk}
    chart(results, OUT / "throughput.png")
    rows = {
        "ceiling": ceiling,
        "faust floor": floor,
        "worker": worker,
        "sdk": sdk,
        "worker 150ms": worker_slow,
        "sdk 150ms": sdk_slow,
        "two workers": two,
    }
    for name, m in rows.items():
        say(
            f"{name:>12}: {m.eps:>10,.0f} events/s  {m.cpu_s_per_million:>7.1f} CPU s per million events "
            f"({m.steady_cpu_s_per_million:.1f} past start-up)  peak RSS {m.peak_rss_mb:>6.1f} MB  "
            f"({m.events:,} events in {m.seconds:.1f} s)"
        )
    if backlog is not None:
        say(
            f"     backlog: {backlog.events:,} events, {backlog.eps:,.0f} events/s, "
            f"peak RSS {backlog.peak_rss_mb:.1f} MB"
        )
    say(f"     latency: p50 {p50:.3f} s, p99 {p99:.3f} s over {measured:,} events at {worker.eps / 2:,.0f} events/s")
    say(f"chart: {OUT / 'throughput.png'}")
    summary = {
        "worker_eps": round(worker.eps),
        "sdk_eps": round(sdk.eps),
        "ceiling_eps": round(ceiling.eps),
        "floor_eps": round(floor.eps),
        "ratio_to_sdk": round(worker.eps / sdk.eps, 2) if sdk.eps else None,
        "ratio_to_floor": round(worker.eps / floor.eps, 3) if floor.eps else None,
        # SDK CPU per event / worker CPU per event.
        "cpu_ratio_to_sdk": round(sdk.cpu_s_per_million / worker.cpu_s_per_million, 2)
        if worker.cpu_s_per_million
        else None,
        "worker_eps_150ms": round(worker_slow.eps),
        "sdk_eps_150ms": round(sdk_slow.eps),
        "ratio_to_sdk_150ms": round(worker_slow.eps / sdk_slow.eps, 2) if sdk_slow.eps else None,
        "latency_hold_150ms": round(worker_slow.eps / worker.eps, 3) if worker.eps else None,
        "ratio_to_ceiling": round(worker.eps / ceiling.eps, 3),
        "peak_rss_mb": round(backlog.peak_rss_mb if backlog else worker.peak_rss_mb, 1),
        "p99_latency_s": round(p99, 3),
        "p50_latency_s": round(p50, 3),
        "faust_floor_eps": round(floor.eps),
        "floor_ratio_to_ceiling": round(floor.eps / ceiling.eps, 3),
        "two_worker_ratio": round(two.eps / worker.eps, 2),
        "worker_cpu_s_per_million": round(worker.cpu_s_per_million, 1),
        "two_workers_cpu_s_per_million": round(two.cpu_s_per_million, 1),
        "sdk_cpu_s_per_million": round(sdk.cpu_s_per_million, 1),
        "floor_cpu_s_per_million": round(floor.cpu_s_per_million, 1),
        "worker_150ms_cpu_s_per_million": round(worker_slow.cpu_s_per_million, 1),
        # The same CPU from the first event Amplitude accepted on (the process's start-up left out, as the floor's):
        "worker_steady_cpu_s_per_million": round(worker.steady_cpu_s_per_million, 1),
        "sdk_steady_cpu_s_per_million": round(sdk.steady_cpu_s_per_million, 1),
        "worker_150ms_steady_cpu_s_per_million": round(worker_slow.steady_cpu_s_per_million, 1),
        "cpu_ratio_to_sdk_steady": round(sdk.steady_cpu_s_per_million / worker.steady_cpu_s_per_million, 2)
        if worker.steady_cpu_s_per_million
        else None,
        "worker_startup_cpu_s": round(worker.startup_cpu_s, 2),
        "max_in_flight": WorkerPart.model_validate(dict(os.environ)).max_in_flight,
        "events": args.events,
        "backlog_events": args.backlog,
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
