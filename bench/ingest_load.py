"""Load on the ingestion endpoint over loopback: requests of 100 events, as MoEngage sends them.

    .venv/bin/python -m bench.ingest_load [--requests 2000] [--concurrency 16]

Starts a local broker (or uses KAFKA_BOOTSTRAP_SERVERS) and ``forwarder ingest`` as its own process (as it
is deployed), sends bounded traffic to 127.0.0.1 only, and prints requests/s, events/s and latency p50/p99
as a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time

import httpx
import orjson
from tqdm import tqdm

from devkit.kafka import broker_for, free_port, stop_pid
from devkit.traffic import streams_requests
from forwarder.kafka.admin import create_topics

BASIC = "bench:bench-password"


async def load(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], dict[int, int], float]:
    headers = {
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(BASIC.encode()).decode(),
    }
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    bar = tqdm(total=len(bodies), desc="requests", unit="req", file=sys.stderr)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            bar.update(1)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    bar.close()
    return latencies, statuses, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    bodies = [orjson.dumps(b) for b in streams_requests(args.requests * 100, per_request=100, seed=5)]
    with broker_for("bench") as servers:
        asyncio.run(create_topics(servers, {"bench-ingest": 4}))
        port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": servers,
            "FORWARDER_SOURCE_TOPIC": "bench-ingest",
            "FORWARDER_INGEST_PORT": str(port),
            "FORWARDER_INGEST_BASIC_AUTH": BASIC,
            "FORWARDER_LOG_LEVEL": "WARNING",
        }
        server = subprocess.Popen([sys.executable, "-m", "forwarder", "ingest"], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            latencies, statuses, elapsed = asyncio.run(load(base + "/moengage/streams", bodies, args.concurrency))
        finally:
            stop_pid(server.pid, 20, server)
    latencies.sort()
    result = {
        "requests": len(latencies),
        "statuses": statuses,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "events_per_s": round(len(latencies) * 100 / elapsed, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "concurrency": args.concurrency,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
