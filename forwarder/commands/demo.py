"""``make run``: the whole path on this machine, with nothing to configure.

Starts a real Kafka broker and the local Amplitude service, publishes realistic MoEngage traffic, runs
the worker until the consumer group has committed everything, then prints what became of every event.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from forwarder.commands.summary import balance_line, outcome_lines
from forwarder.core.keys import partition_key
from forwarder.kafka.admin import create_topics
from forwarder.local.amplitude import AmplitudeService, ServiceThread
from forwarder.local.kafka import broker_for, free_port, stop_pid
from forwarder.local.traffic import streams_requests
from forwarder.wiring import worker_environment
from forwarder.worker.observe import scrape_outcomes, wait_until_committed

TOPIC = "moengage-streams"
DLQ_TOPIC = "moengage-streams-dlq"
GROUP = "moengage-amplitude-forwarder-demo"


async def publish(servers: str, total_events: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    messages = 0
    try:
        with tqdm(total=total_events, desc="publishing", unit="ev", file=sys.stderr) as bar:
            for body in streams_requests(total_events):
                await producer.send_and_wait(TOPIC, orjson.dumps(body), key=partition_key(body["events"][0]))
                messages += 1
                bar.update(len(body["events"]))
    finally:
        await producer.stop()
    return messages


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_demo(total_events: int = 5000, timeout_s: float = 300.0) -> int:
    # The offset probes join no group; aiokafka's coordinator chatter would only confuse a reader.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    say("starting a local Apache Kafka broker ...")
    with broker_for("demo") as servers:
        say(f"broker ready at {servers}; starting the local Amplitude service ...")
        service = AmplitudeService(api_keys={"demo-key"})
        runner = ServiceThread(service.app)
        amplitude_url = runner.start()
        asyncio.run(create_topics(servers, {TOPIC: 3, DLQ_TOPIC: 1}))
        asyncio.run(publish(servers, total_events))
        web_port = free_port()
        env = worker_environment(
            servers, amplitude_url, TOPIC, GROUP, DLQ_TOPIC, "demo-key", FORWARDER_WEB_PORT=str(web_port)
        )
        with tempfile.TemporaryDirectory() as tmp:
            log_path = Path(tmp) / "worker.log"
            with open(log_path, "wb") as log_file:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "forwarder", "worker"],
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            say(f"worker started (pid {worker.pid}); waiting until it has committed every message ...")
            try:
                asyncio.run(wait_until_committed(servers, TOPIC, GROUP, timeout_s, lambda: worker.poll() is None))
                totals = scrape_outcomes(f"http://127.0.0.1:{web_port}/metrics")
            except (TimeoutError, RuntimeError) as exc:
                say(f"the demo failed: {exc}\n--- worker log (tail) ---\n{log_path.read_text()[-4000:]}")
                return 1
            finally:
                stop_pid(worker.pid, 30, worker)
                runner.stop()

    accepted = service.recorder.accepted
    print(f"Amplitude (local service) accepted {accepted} events")
    print("\n".join(outcome_lines(totals)))
    text, holds = balance_line(totals, expected_read=total_events)
    print(text)
    return 0 if holds and accepted >= totals.total("delivered") else 1
