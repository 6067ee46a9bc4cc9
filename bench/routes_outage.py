"""One project down while traffic flows (``python -m bench.routes_outage [--outage-s 180]``): the other project's
events keep arriving, the parked route's all arrive once it recovers, each user's in order.

A broker, two local Amplitude projects (``eu``, ``us``; the ``rest`` route, the default, goes to ``us``) and one
worker with three routes. Traffic flows at a steady rate; after ``--before-s`` the EU project answers 503 for
``--outage-s``. Prints the US project's events/s before and during the outage, when the EU route was parked and
when its last event arrived, whether every user's events arrived in order; then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from bench.run import say
from devkit.amplitude import AmplitudeService, ServiceThread
from devkit.environment import TWO_PROJECTS_ROUTES, worker_environment
from devkit.kafka import broker_for, free_port, stop_pid
from devkit.observe import out_of_user_order, wait_until_committed
from devkit.traffic import numbered_body
from forwarder.core.keys import partition_key
from forwarder.kafka.admin import create_topics

APPS = ("Shop EU", "Shop US", "Shop Staging")


async def feed(servers: str, topic: str, rate: float, seconds: float, sent: list[dict[str, Any]]) -> None:
    """``rate`` bodies a second for ``seconds``."""
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=5)
    await producer.start()
    sequence: dict[str, int] = {}
    try:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            b = numbered_body(n, APPS, 300, sequence)
            await producer.send(topic, orjson.dumps(b), key=partition_key(b["events"][0]))
            sent.append(b)
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    eu, us = AmplitudeService(api_keys={"key-eu"}), AmplitudeService(api_keys={"key-us"})
    eu_runner, us_runner = ServiceThread(eu.app), ServiceThread(us.app)
    eu_url, us_url = eu_runner.start(), us_runner.start()
    with broker_for("routes-outage") as servers, tempfile.TemporaryDirectory() as tmp:
        topic = f"outage-{int(time.time())}"
        asyncio.run(create_topics(servers, {topic: 3, topic + "-retry": 3, topic + "-dlq": 1}))
        asyncio.run(create_topics(servers, {topic + "-ledger": 1}, config={"cleanup.policy": "compact,delete"}))
        routes_file = Path(tmp) / "routes.toml"
        routes_file.write_text(TWO_PROJECTS_ROUTES.format(eu=eu_url, us=us_url))
        web_port = free_port()
        env = worker_environment(
            servers,
            us_url,
            topic,
            topic + "-group",
            topic + "-dlq",
            "key-us",
            EU_KEY="key-eu",
            US_KEY="key-us",
            FORWARDER_ROUTES_FILE=str(routes_file),
            FORWARDER_RETRY_TOPIC=topic + "-retry",
            FORWARDER_WEB_PORT=str(web_port),
            FORWARDER_LOG_LEVEL="WARNING",
            FORWARDER_ROUTE_PARK_AFTER_S=str(args.park_after_s),
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "forwarder", "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        sent: list[dict[str, Any]] = []
        total_s = args.before_s + args.outage_s + args.after_s
        samples: list[tuple[float, int, bool]] = []
        started = time.monotonic()
        try:
            feeding = asyncio.new_event_loop()
            feeder = threading.Thread(
                target=feeding.run_until_complete, args=(feed(servers, topic, args.rate, total_s, sent),)
            )
            feeder.start()
            outage_at = started + args.before_s
            while feeder.is_alive():
                now = time.monotonic()
                if now >= outage_at and eu.faults.outage_until == 0.0:
                    eu.faults.outage_until = time.time() + args.outage_s
                    say(f"the EU project answers 503 for {args.outage_s:.0f} s")
                try:
                    parked = "eu" in httpx.get(f"http://127.0.0.1:{web_port}/readyz", timeout=2).json().get(
                        "parked_routes", []
                    )
                except (httpx.HTTPError, ValueError):
                    parked = False
                samples.append((now - started, len(us.recorder.by_insert_id), parked))
                time.sleep(5)
            feeder.join()
            eu_ids = {e["event_uuid"] for b in sent if b["app_name"] == "Shop EU" for e in b["events"]}
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and not eu_ids <= set(eu.recorder.by_insert_id):
                time.sleep(1)
            all_eu_at = time.monotonic() - started
            asyncio.run(wait_until_committed(servers, topic, topic + "-group", 300))
        finally:
            stop_pid(worker.pid, 30, worker)
            eu_runner.stop()
            us_runner.stop()
    us_ids = {e["event_uuid"] for b in sent if b["app_name"] != "Shop EU" for e in b["events"]}

    def rate_between(first: float, last: float) -> float:
        inside = [(t, n) for t, n, _ in samples if first <= t <= last]
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) if len(inside) > 1 else 0.0

    parked_at = next((t for t, _, p in samples if p), None)
    return {
        "rate_bodies_per_s": args.rate,
        "outage_s": args.outage_s,
        "us_events_per_s_before": round(rate_between(5, args.before_s), 1),
        "us_events_per_s_during": round(
            rate_between(args.before_s + args.park_after_s + 10, args.before_s + args.outage_s), 1
        ),
        "eu_parked_seen_at_s": parked_at,
        "eu_outage_ends_at_s": args.before_s + args.outage_s,
        "eu_all_delivered_at_s": round(all_eu_at, 1),
        "eu_delivered": len(set(eu.recorder.by_insert_id) & eu_ids),
        "eu_sent": len(eu_ids),
        "us_delivered": len(set(us.recorder.by_insert_id) & us_ids),
        "us_sent": len(us_ids),
        "in_order_eu": out_of_user_order(list(eu.recorder.events)) is None,
        "in_order_us": out_of_user_order(list(us.recorder.events)) is None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=30.0, help="Streams bodies (10 events) a second")
    parser.add_argument("--before-s", type=float, default=60.0)
    parser.add_argument("--outage-s", type=float, default=180.0)
    parser.add_argument("--after-s", type=float, default=30.0)
    parser.add_argument("--park-after-s", type=float, default=60.0)
    result = run(parser.parse_args())
    for key, value in result.items():
        say(f"{key}: {value}")
    print(json.dumps(result))
    os._exit(0)  # the feeder's loop thread is done; nothing else to wait for


if __name__ == "__main__":
    main()
