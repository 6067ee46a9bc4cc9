"""``make run``: the whole path on this machine, with nothing to configure.

Starts a real Kafka broker and the local Amplitude service, publishes realistic MoEngage traffic, runs
the worker until the consumer group has committed everything, then prints what became of every event: the
worker's own counts, the reconciliation report from the ledger (checked against those counts, code by code, and
against what the local Amplitude service counted), and its chart.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from devkit.amplitude import AmplitudeService, ServiceThread
from devkit.environment import worker_environment
from devkit.kafka import broker_for, free_port, stop_pid
from devkit.observe import scrape_outcomes, wait_until_committed
from devkit.traffic import streams_requests
from forwarder.commands.report import reconcile, render_comparisons
from forwarder.commands.taxonomy import reconcile_taxonomy
from forwarder.commands.taxonomy import render as render_taxonomy
from forwarder.core.counting import OutcomeCounter
from forwarder.core.keys import partition_key
from forwarder.kafka.admin import create_topics
from forwarder.ledger.chart import draw_chart
from forwarder.ledger.report import Report, Window, build_report, render
from forwarder.settings import ForwarderSettings, TaxonomySettings, settings_from
from forwarder.summary import balance_line, outcome_lines

TOPIC = "moengage-streams"
DLQ_TOPIC = "moengage-streams-dlq"
GROUP = "moengage-amplitude-forwarder-demo"
API_KEY, SECRET_KEY = "demo-key", "demo-secret"
DEFAULT_CHART = Path(".local/demo-report.png")


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


def codes_that_differ(report: Report, worker: OutcomeCounter) -> list[str]:
    """The event codes whose report row differs from the worker's own count (outcome, reason, code)."""
    from_ledger: Counter[tuple[str, str, str]] = Counter()
    for row in report.rows:
        from_ledger.update(row.live.by_code)
    by_worker = worker.by_code
    return sorted({key[2] for key in from_ledger.keys() | by_worker.keys() if from_ledger[key] != by_worker[key]})


def reconcile_demo(env: dict[str, str], worker_counts: OutcomeCounter, chart: Path) -> bool:
    """Prints the report of what the demo just did and whether it agrees with the worker and with Amplitude."""
    settings = settings_from({**env, "AMPLITUDE_SECRET_KEY": SECRET_KEY}, ForwarderSettings)
    by_campaign = asyncio.run(reconcile(settings, "campaign", Window(), amplitude=True))
    by_code = build_report(by_campaign.settled, "code")
    print("\nreconciliation report (forwarder report --by campaign, from the ledger topic):")
    print(render(by_campaign.report, "table"))
    differing_codes = codes_that_differ(by_code, worker_counts)
    print(
        "report rows by event code equal the worker's own counts: "
        + ("OK" if not differing_codes else f"MISMATCH for {', '.join(differing_codes)}")
        + f" ({len(by_code.rows)} codes)"
    )
    comparisons = by_campaign.comparisons or []
    differing = [c for c in comparisons if c.differs]
    if differing:
        print(render_comparisons(differing, "table"))
    print(
        f"Amplitude (local service, Dashboard API) counted what was delivered for "
        f"{len(comparisons) - len(differing)} of {len(comparisons)} (event type, day) rows"
    )
    draw_chart(by_campaign.report, chart, "make run: MoEngage -> Amplitude by campaign")
    print(f"chart: {chart}")
    return by_campaign.holds and not differing_codes


def taxonomy_demo(env: dict[str, str]) -> bool:
    """``forwarder taxonomy`` against the local project: the differences, ``--apply``, then none."""
    settings = settings_from({**env, "AMPLITUDE_SECRET_KEY": SECRET_KEY}, TaxonomySettings)
    found, checked = asyncio.run(reconcile_taxonomy(settings, fix=True))
    inactive = sum(not d.wanted.active for d in found)
    print(
        f"\ntaxonomy (forwarder taxonomy --apply): {len(found)} of {checked} forwarded event types differed and were "
        f"created or updated in category MoEngage, {inactive} Delivery events inactive"
    )
    left, _ = asyncio.run(reconcile_taxonomy(settings, fix=False))
    print(render_taxonomy(left, checked))
    return not left


def run_demo(total_events: int = 5000, timeout_s: float = 300.0, chart: Path = DEFAULT_CHART) -> int:
    # The offset probes join no group; aiokafka's coordinator chatter would only confuse a reader.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    say("starting a local Apache Kafka broker ...")
    with broker_for("demo") as servers:
        say(f"broker ready at {servers}; starting the local Amplitude service ...")
        service = AmplitudeService(api_keys={API_KEY}, secret_key=SECRET_KEY)
        runner = ServiceThread(service.app)
        amplitude_url = runner.start()
        asyncio.run(create_topics(servers, {TOPIC: 3, DLQ_TOPIC: 1}))
        # Its own ledger, so a broker shared with earlier runs (KAFKA_BOOTSTRAP_SERVERS) reports this run only.
        ledger_topic = f"{TOPIC}-ledger-{uuid.uuid4().hex[:8]}"
        asyncio.run(create_topics(servers, {ledger_topic: 1}, config={"cleanup.policy": "compact,delete"}))
        asyncio.run(publish(servers, total_events))
        web_port = free_port()
        env = worker_environment(
            servers,
            amplitude_url,
            TOPIC,
            GROUP,
            DLQ_TOPIC,
            API_KEY,
            FORWARDER_WEB_PORT=str(web_port),
            FORWARDER_LEDGER_TOPIC=ledger_topic,
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

            try:
                accepted = service.recorder.accepted
                print(f"Amplitude (local service) accepted {accepted} events")
                print("\n".join(outcome_lines(totals)))
                text, holds = balance_line(totals, expected_read=total_events)
                print(text)
                reconciled = reconcile_demo(env, totals, chart) and taxonomy_demo(env)
            finally:
                runner.stop()
    return 0 if holds and reconciled and accepted >= totals.total("delivered") else 1
