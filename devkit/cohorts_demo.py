"""``make cohorts-demo``: an Amplitude cohort kept in step with a MoEngage segment, on this machine.

A real Kafka broker, the local Amplitude service (Behavioral Cohorts API and Cohort Webhooks sender), the
ingestion endpoint's cohort route, the cohort worker and the local MoEngage service. A cohort of 5,000 users is
pulled as a snapshot and synced; then 300 leave and 200 join, and Amplitude says so by webhook (twice for some
batches, as its retries do). Both sides are printed and the segment is checked to equal the cohort's members
that MoEngage knows. ``CohortRig`` is the same set-up for the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devkit.amplitude import AmplitudeService, ServiceThread
from devkit.kafka import broker_for, free_port, stop_pid
from devkit.moengage import MoEngageService
from devkit.observe import wait_until_committed
from forwarder.cohorts.webhook import CohortRoute
from forwarder.ingest.app import create_ingest_app
from forwarder.intake.auth import Credentials
from forwarder.intake.sink import KafkaSink
from forwarder.kafka.admin import create_topics

API_KEY, SECRET_KEY = "demo-key", "demo-secret"
WORKSPACE, DATA_KEY = "demo-workspace", "demo-data-key"
WEBHOOK_HEADER = ("X-Cohort-Secret", "demo-webhook-secret")
COHORT_ID = "demo1"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class CohortRig:
    """Every part of the cohort sync but the worker processes, which ``start_worker`` starts as operators do."""

    servers: str
    amplitude: AmplitudeService
    amplitude_url: str
    moengage: MoEngageService
    moengage_url: str
    ingest_url: str
    env: dict[str, str]
    workdir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return self.env["COHORTS_TOPIC"]

    @property
    def group(self) -> str:
        return self.env["COHORTS_GROUP_ID"]

    def start_worker(self, module: str = "forwarder", **extra: str) -> subprocess.Popen[bytes]:
        """``module``: what ``python -m`` runs (a test may wrap the worker)."""
        index = len(self.workers)
        env = {**self.env, "COHORTS_WEB_PORT": str(free_port()), **extra}
        with open(self.workdir / f"cohorts-worker-{index}.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module, "cohorts", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        process.web_port = int(env["COHORTS_WEB_PORT"])  # type: ignore[attr-defined]
        self.workers.append(process)
        return process

    def worker_log(self, index: int = 0) -> str:
        return (self.workdir / f"cohorts-worker-{index}.log").read_text(errors="replace")

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "forwarder", "cohorts", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def define_cohort(self, cohort: dict[str, Any]) -> None:
        httpx.post(f"{self.amplitude_url}/_local/cohorts", json=cohort, timeout=30).raise_for_status()

    def webhook(self, duplicate_rate: float = 0.0) -> dict[str, Any]:
        return {
            "url": self.ingest_url,
            "headers": {WEBHOOK_HEADER[0]: WEBHOOK_HEADER[1]},
            "duplicate_rate": duplicate_rate,
        }

    def churn(self, cohort_id: str, leave: int, join: int) -> None:
        """Members leave and join in Amplitude, which posts the changes to the webhook (from its own loop)."""
        answer = httpx.post(
            f"{self.amplitude_url}/_local/cohorts/{cohort_id}/churn", json={"leave": leave, "join": join}, timeout=30
        )
        answer.raise_for_status()

    def segment(self, cohort_id: str) -> set[str]:
        segments = httpx.get(f"{self.moengage_url}/_local/segments", timeout=30).json()
        return set(segments.get(cohort_id, {}).get("members", []))

    def expected(self, cohort_id: str) -> set[str]:
        """The cohort's members MoEngage knows, as ``field:value`` (the segment's shape)."""
        members = httpx.get(f"{self.amplitude_url}/_local/cohorts/{cohort_id}", timeout=30).json()["members"]
        wanted = set()
        for member in members:
            anonymous = (member.get("user_properties") or {}).get("moe_anonymous_id")
            identity = ("uid", member["user_id"]) if member.get("user_id") else ("moe_anonymous_id", anonymous)
            if identity[1] and identity in self.moengage.known:
                wanted.add(f"{identity[0]}:{identity[1]}")
        return wanted

    def wait_until_synced(self, timeout_s: float = 180.0, cohort_id: str | list[str] = COHORT_ID) -> None:
        """Until every record was committed and each segment equals its cohort's members MoEngage knows."""
        deadline = time.monotonic() + timeout_s
        alive = lambda: any(w.poll() is None for w in self.workers)  # noqa: E731
        asyncio.run(wait_until_committed(self.servers, self.topic, self.group, timeout_s, alive))
        for one in [cohort_id] if isinstance(cohort_id, str) else cohort_id:
            while self.segment(one) != self.expected(one):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the segment of {one} did not reach the cohort's known members")
                time.sleep(0.5)

    def status(self) -> list[dict[str, Any]]:
        done = self.command("status", "--format", "json")
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                stop_pid(worker.pid, 20, worker)


@contextlib.contextmanager
def cohort_rig(servers: str, workdir: Path, partitions: int = 2, **service_options: Any) -> Iterator[CohortRig]:
    suffix = uuid.uuid4().hex[:8]
    topic, dlq, status = f"cohorts-{suffix}", f"cohorts-dlq-{suffix}", f"cohorts-status-{suffix}"
    asyncio.run(create_topics(servers, {topic: partitions, dlq: 1}))
    asyncio.run(create_topics(servers, {status: 1}, config={"cleanup.policy": "compact"}))
    amplitude = AmplitudeService(api_keys={API_KEY}, secret_key=SECRET_KEY)
    amplitude.cohorts.export_delay_s = 0.5
    moengage = MoEngageService(WORKSPACE, DATA_KEY, **service_options)
    sink = KafkaSink(servers, "unused-streams-topic", 10.0, max_request_bytes=6 * 1024 * 1024)
    route = CohortRoute("/amplitude/cohorts", Credentials.parse(None, ": ".join(WEBHOOK_HEADER)), topic)
    runners = [
        ServiceThread(amplitude.app),
        ServiceThread(moengage.app),
        ServiceThread(create_ingest_app(sink, Credentials(), mounts=[route])),
    ]
    amplitude_url, moengage_url, ingest_url = (runner.start() for runner in runners)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": servers,
        "COHORTS_TOPIC": topic,
        "COHORTS_DLQ_TOPIC": dlq,
        "COHORTS_STATUS_TOPIC": status,
        "COHORTS_GROUP_ID": f"cohorts-{suffix}",
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_DATA_API_KEY": DATA_KEY,
        "MOENGAGE_API_URL": moengage_url,
        "AMPLITUDE_API_KEY": API_KEY,
        "AMPLITUDE_SECRET_KEY": SECRET_KEY,
        "AMPLITUDE_API_URL": amplitude_url,
        "COHORTS_TOPIC_REPLICATION": "1",
        "COHORTS_SESSION_TIMEOUT_S": "6",
        "COHORTS_WEB_HOST": "127.0.0.1",
    }
    rig = CohortRig(servers, amplitude, amplitude_url, moengage, moengage_url, ingest_url + route.path, env, workdir)
    try:
        yield rig
    finally:
        rig.stop_workers()
        for runner in runners:
            runner.stop()


def demo_members(users: int) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """(the cohort's members, the users MoEngage knows): 90 % with a user id (MoEngage knows 14 in 15 of them),
    8 % anonymous with a ``moe_anonymous_id`` (MoEngage knows 3 in 4), 2 % with neither (unmapped)."""
    members: list[dict[str, Any]] = []
    known: set[tuple[str, str]] = set()
    for i in range(users):
        kind = i % 50
        if kind < 45:
            members.append({"user_id": f"customer-{i}", "user_properties": {"moe_anonymous_id": f"anon-{i}"}})
            if i % 15:
                known.add(("uid", f"customer-{i}"))
        elif kind < 49:
            members.append({"user_id": None, "amplitude_id": i, "user_properties": {"moe_anonymous_id": f"anon-{i}"}})
            if i % 4:
                known.add(("moe_anonymous_id", f"anon-{i}"))
        else:
            members.append({"user_id": None, "amplitude_id": i, "user_properties": {}})
    return members, known


def show(rig: CohortRig, title: str) -> bool:
    cohort = httpx.get(f"{rig.amplitude_url}/_local/cohorts/{COHORT_ID}", timeout=30).json()
    segment, expected = rig.segment(COHORT_ID), rig.expected(COHORT_ID)
    print(f"\n{title}")
    print(f"  Amplitude cohort {COHORT_ID}: {len(cohort['members'])} members")
    print(f"  MoEngage segment:  {len(segment)} members")
    verdict = (
        "OK"
        if segment == expected
        else f"MISMATCH ({len(segment - expected)} extra, {len(expected - segment)} missing)"
    )
    print(f"  segment = cohort members MoEngage knows ({len(expected)}): {verdict}")
    return segment == expected


def run_cohorts_demo(users: int = 5000, leave: int = 300, join: int = 200, timeout_s: float = 300.0) -> int:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    say("starting a local Apache Kafka broker ...")
    with broker_for("demo") as servers, tempfile.TemporaryDirectory() as tmp, cohort_rig(servers, Path(tmp)) as rig:
        members, known = demo_members(users)
        rig.moengage.known |= known
        rig.moengage.known |= {("uid", f"joined-{i}") for i in range(join) if i % 4}  # 3 in 4 of who joins
        rig.define_cohort({"id": COHORT_ID, "name": "Bought twice: last 30 days", "members": members})
        worker = rig.start_worker()
        say(f"cohort worker started (pid {worker.pid}); pulling the cohort as a snapshot ...")
        pulled = rig.command("pull", "--cohort", COHORT_ID)
        print(pulled.stdout.strip())
        if pulled.returncode != 0:
            say(f"the pull failed: {pulled.stderr.strip()}")
            return 1
        try:
            rig.wait_until_synced(timeout_s)
            first = show(rig, "after the first sync (pull -> snapshot -> worker -> MoEngage):")
            say(f"the cohort changes: {leave} leave, {join} join; Amplitude posts them by webhook (some twice) ...")
            rig.define_cohort({"id": COHORT_ID, "members": members, "webhook": rig.webhook(duplicate_rate=0.5)})
            time.sleep(1.0)  # Amplitude's first webhook sync sends the whole cohort: nothing new for MoEngage
            rig.churn(COHORT_ID, leave, join)
            time.sleep(1.0)
            rig.wait_until_synced(timeout_s)
            second = show(
                rig, f"after {leave} left and {join} joined (webhooks -> ingest -> Kafka -> worker -> MoEngage):"
            )
        except (TimeoutError, RuntimeError) as exc:
            say(f"the demo failed: {exc}\n--- worker log (tail) ---\n{rig.worker_log()[-4000:]}")
            return 1
        print("\nforwarder cohorts status:")
        print(rig.command("status").stdout.rstrip())
        deliveries = rig.amplitude.cohorts.cohorts[COHORT_ID].deliveries
        answered = all(d["status"] == 200 for d in deliveries)
        print(
            f"\nwebhook deliveries: {len(deliveries)} (all answered 200: {answered}); "
            f"MoEngage: {rig.moengage.members_sent} members in {sum(rig.moengage.responses.values())} requests, "
            f"{rig.moengage.unknown_ignored} unknown users not added"
        )
    return 0 if first and second else 1
