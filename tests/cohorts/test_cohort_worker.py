"""The cohort worker on a real Kafka broker, as operators run it (a separate process), between the local Amplitude
service (exports, webhooks through ``ingest``) and the local MoEngage service."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from devkit.cohorts_demo import CohortRig, cohort_rig, demo_members
from devkit.moengage import MoEngageFaults
from devkit.observe import wait_until_committed

pytestmark = pytest.mark.kafka


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, rig: CohortRig) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{rig.worker_log(len(rig.workers) - 1)[-3000:]}")
        time.sleep(0.2)


def uids(members: list[dict[str, Any]]) -> set[str]:
    return {f"uid:{m['user_id']}" for m in members}


def requests_seen(rig: CohortRig) -> int:
    return sum(rig.moengage.responses.values())


def reached(rig: CohortRig, target: int) -> bool:
    return requests_seen(rig) >= target


def test_pull_then_webhooks_keep_the_segment_exact_and_a_repeated_delivery_changes_nothing(
    kafka: str, tmp_path: Path
) -> None:
    with cohort_rig(kafka, tmp_path) as rig:
        members, known = demo_members(2000)
        rig.moengage.known |= known | {("uid", f"joined-{i}") for i in range(60) if i % 2}
        rig.define_cohort({"id": "c1", "name": "Buyers: EU", "members": members})
        rig.start_worker()
        pulled = rig.command("pull", "--cohort", "c1")
        assert pulled.returncode == 0, pulled.stderr
        assert "2000 members written as a snapshot" in pulled.stdout
        rig.wait_until_synced(cohort_id="c1")
        assert rig.segment("c1") == rig.expected("c1")
        assert len(rig.expected("c1")) > 1500
        port = rig.workers[0].web_port  # type: ignore[attr-defined]
        for page in ("/table/", "/router/"):  # the members' table is not served to anyone who asks
            assert httpx.get(f"http://127.0.0.1:{port}{page}", timeout=10).status_code == 404, page
        after_pull = requests_seen(rig)
        exports = rig.amplitude.cohorts.export_requests
        again = rig.command("pull", "--cohort", "c1", "--if-changed")  # lastComputed has not moved
        assert again.returncode == 0, again.stderr
        assert "unchanged since the last pull; skipped" in again.stdout
        assert rig.amplitude.cohorts.export_requests == exports  # no export spent from the monthly quota

        # Push: Amplitude's first webhook sync sends everyone (nothing new for MoEngage), then 100 leave and 60
        # join; every batch is delivered twice, as Amplitude's retries do.
        rig.define_cohort({"id": "c1", "members": members, "webhook": rig.webhook(duplicate_rate=1.0)})
        rig.churn("c1", 100, 60)

        def deliveries() -> list[dict[str, Any]]:
            return rig.amplitude.cohorts.cohorts["c1"].deliveries

        wait_for(lambda: len(deliveries()) == 2 * (2 + 2), 60, "webhook deliveries", rig)
        assert all(d["status"] == 200 for d in deliveries())
        rig.wait_until_synced(cohort_id="c1")
        assert rig.segment("c1") == rig.expected("c1")
        # one add and one remove request: the whole-cohort sync, and every second copy, sent nothing
        assert requests_seen(rig) - after_pull == 2
        (status,) = rig.status()
        assert status["cohort_id"] == "c1"
        assert status["name"] == "Buyers: EU"
        assert status["snapshot_members"] == 2000
        now = httpx.get(f"{rig.amplitude_url}/_local/cohorts/c1", timeout=30).json()["members"]
        mapped = [m for m in now if m["user_id"] or m["user_properties"].get("moe_anonymous_id")]
        assert status["in_uid"] + status["in_anonymous"] == len(mapped)  # members with neither id are never sent
        assert len(mapped) < len(now)
        assert (status["pending"], status["dead_lettered"]) == (0, 0)
        table = rig.command("status")
        assert table.returncode == 0
        assert "Buyers: EU" in table.stdout
        assert "sent as anonymous" in table.stdout


def test_a_worker_killed_mid_sync_ends_with_the_segment_exactly_right(kafka: str, tmp_path: Path) -> None:
    with cohort_rig(kafka, tmp_path, partitions=1) as rig:
        rig.env.update(COHORTS_SNAPSHOT_CHUNK_MEMBERS="500", COHORTS_COMMIT_INTERVAL_S="10")
        first = [{"user_id": f"u{i}"} for i in range(4000)]
        # The second membership: 2,000 leave; 8,000 join, spread over every part, so every part sends.
        second = [m for i, m in enumerate(first) if i % 2] + [{"user_id": f"n{i}"} for i in range(8000)]
        second.sort(key=lambda m: str(m["user_id"])[::-1])
        rig.moengage.known |= {("uid", str(m["user_id"])) for m in first + second}
        rig.define_cohort({"id": "c1", "name": "Churners", "members": first})
        worker = rig.start_worker()
        assert rig.command("pull", "--cohort", "c1").returncode == 0
        rig.wait_until_synced(cohort_id="c1")

        rig.moengage.faults = MoEngageFaults(latency_s=0.15)
        rig.define_cohort({"id": "c1", "members": second})
        assert rig.command("pull", "--cohort", "c1").returncode == 0
        # A later webhook takes 300 members of the snapshot out again: re-reading the snapshot must not re-add them.
        leaving = [m for m in second if str(m["user_id"]).startswith("n")][:300]
        body = {
            "cohort_id": "c1",
            "cohort_name": "Churners",
            "in_cohort": False,
            "computed_time": int(time.time() * 1000) + 60_000,
            "message_id": "later::exit::0",
            "users": leaving,
        }
        headers = rig.webhook()["headers"]
        assert httpx.post(rig.ingest_url, json=body, headers=headers, timeout=30).status_code == 200

        for _ in range(2):  # killed twice while the snapshot's requests are going out
            target = requests_seen(rig) + 4
            wait_for(partial(reached, rig, target), 60, "requests of the snapshot", rig)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            worker = rig.start_worker()
        # Killed once more after the webhook's removals were applied, before anything was committed.
        wait_for(lambda: not rig.segment("c1") & uids(leaving), 120, "the webhook's removals", rig)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        rig.moengage.faults = MoEngageFaults()
        rig.start_worker()
        wanted = uids(second) - uids(leaving)
        wait_for(lambda: rig.segment("c1") == wanted, 180, "the segment to be exact", rig)
        asyncio.run(wait_until_committed(rig.servers, rig.topic, rig.group, 120))
        time.sleep(1)
        assert rig.segment("c1") == wanted  # no removal lost, no stale add


def cohort(index: int, size: int, leave_every: int = 0) -> dict[str, Any]:
    members = [{"user_id": f"c{index}-u{i}"} for i in range(size) if not (leave_every and i % leave_every == 0)]
    return {"id": f"c{index}", "name": f"Cohort {index}", "members": members}


def test_a_rebalance_moving_cohorts_keeps_their_state(kafka: str, tmp_path: Path) -> None:
    cohorts = 8
    ids = [f"c{c}" for c in range(cohorts)]
    with cohort_rig(kafka, tmp_path, partitions=4) as rig:
        rig.moengage.known |= {("uid", f"c{c}-u{i}") for c in range(cohorts) for i in range(400)}
        for c in range(cohorts):
            rig.define_cohort(cohort(c, 400))
        first = rig.start_worker()
        assert rig.command("pull", "--all").returncode == 0
        rig.wait_until_synced(cohort_id=ids)

        second = rig.start_worker()  # the group rebalances: some cohorts' partitions move to it
        wait_for(lambda: "partitions moved away" in rig.worker_log(0), 90, "the group to rebalance", rig)
        for c in range(cohorts):
            rig.define_cohort(cohort(c, 400, leave_every=5))  # 80 leave each: only the state knows who
        assert rig.command("pull", "--all").returncode == 0
        rig.wait_until_synced(cohort_id=ids)
        owned_by_second = {
            line.split('"')[1] for line in _metrics(second).splitlines() if line.startswith("cohort_members{")
        }
        assert owned_by_second
        assert len(owned_by_second) < cohorts

        first.send_signal(signal.SIGTERM)  # the first leaves: the second takes everything, state recovered
        first.wait(60)
        for c in range(cohorts):
            rig.define_cohort(cohort(c, 400, leave_every=4))
        assert rig.command("pull", "--all").returncode == 0
        rig.wait_until_synced(cohort_id=ids)
        assert all(len(rig.segment(c)) == 300 for c in ids)  # only the state knew who had to leave


def _metrics(worker: Any) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""


def test_429s_and_5xx_from_moengage_delay_but_lose_nothing(kafka: str, tmp_path: Path) -> None:
    # MoEngage allows 4 requests per 2 s window here, the worker is configured for 300 a minute: it learns from
    # the 429s; and one answer in four is a 503.
    with cohort_rig(kafka, tmp_path, requests_per_minute=4, rate_window_s=2.0) as rig:
        rig.env["COHORTS_SNAPSHOT_CHUNK_MEMBERS"] = "200"
        rig.moengage.faults = MoEngageFaults(error_rates={503: 0.25})
        members = [{"user_id": f"u{i}"} for i in range(3000)]
        rig.moengage.known |= {("uid", f"u{i}") for i in range(3000)}
        rig.define_cohort({"id": "c1", "name": "Throttled", "members": members})
        rig.start_worker()
        assert rig.command("pull", "--cohort", "c1").returncode == 0
        rig.wait_until_synced(cohort_id="c1", timeout_s=240)
        assert rig.segment("c1") == uids(members)
        assert rig.moengage.responses[429] > 0
        assert rig.moengage.responses[503] > 0
        (status,) = rig.status()
        assert (status["in_uid"], status["pending"], status["dead_lettered"]) == (3000, 0, 0)


def test_a_wrong_key_stops_the_worker_and_a_restart_with_the_right_one_loses_nothing(
    kafka: str, tmp_path: Path
) -> None:
    with cohort_rig(kafka, tmp_path) as rig:
        members = [{"user_id": f"u{i}"} for i in range(500)]
        rig.moengage.known |= {("uid", f"u{i}") for i in range(500)}
        rig.define_cohort({"id": "c1", "name": "Keys", "members": members})
        wrong = rig.start_worker(MOENGAGE_DATA_API_KEY="wrong-key-value")
        assert rig.command("pull", "--cohort", "c1").returncode == 0

        def refused() -> bool:
            try:
                answer = httpx.get(f"http://127.0.0.1:{wrong.web_port}/readyz", timeout=5)  # type: ignore[attr-defined]
            except httpx.HTTPError:
                return False
            return answer.status_code == 503 and "MOENGAGE_DATA_API_KEY" in answer.text

        wait_for(refused, 60, "the worker to refuse to go on", rig)
        assert wrong.poll() is None  # parked, not crashed in a loop
        log = rig.worker_log(0)
        assert "cohort sync stopped" in log
        assert "wrong-key-value" not in log
        assert rig.segment("c1") == set()
        wrong.send_signal(signal.SIGTERM)
        wrong.wait(60)
        rig.start_worker()
        rig.wait_until_synced(cohort_id="c1")
        assert rig.segment("c1") == uids(members)
