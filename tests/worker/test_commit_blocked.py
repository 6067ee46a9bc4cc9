"""A commit held behind a record that was never processed is reported: ``forwarder_commit_blocked`` 1 and
``/healthz`` 503 naming the offset; the restart the liveness probe makes reads again from the commit and repairs it.

The hole is made on purpose: the worker runs with its offset guard only watching (``tests/worker/unguarded.py``)
and drops offset 5 of the partition the first time faust hands it over, as faust was seen to.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from devkit.kafka import free_port
from devkit.observe import wait_until_committed
from forwarder.kafka.admin import partition_offsets
from tests.conftest import WorkerProcess
from tests.kafka_helpers import one_partition_of_streams
from tests.worker.test_worker_delivery import worker_env

pytestmark = pytest.mark.kafka


def health(worker: WorkerProcess) -> tuple[int, dict]:  # type: ignore[type-arg]
    answer = httpx.get(f"http://127.0.0.1:{worker.web_port}/healthz", timeout=5)
    return answer.status_code, answer.json()


def blocked_gauge(worker: WorkerProcess, topic: str) -> float | None:
    for line in worker.metrics().splitlines():
        if line.startswith(f'forwarder_commit_blocked{{partition="0",topic="{topic}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_commit_held_behind_a_hole_is_reported_and_a_restart_repairs_it(kafka, amplitude, topic_names, tmp_path):
    _, url = amplitude
    source, dlq, group, bodies = one_partition_of_streams(kafka, topic_names, seed=5)
    env = {
        **worker_env(kafka, url, source, dlq, group),
        "FORWARDER_STALL_TIMEOUT_S": "10",
        "FORWARDER_BATCH_MAX_MESSAGES": "4",  # offset 5 is handed over after a batch was processed and committed
        "FORWARDER_BATCH_WINDOW_S": "0.2",
        "UNGUARDED_DROP": "0:5",
    }
    holed = WorkerProcess(
        {**env, "FORWARDER_WEB_PORT": str(free_port())}, tmp_path / "holed.log", "tests.worker.unguarded"
    )
    holed.start()
    try:
        deadline = time.monotonic() + 90
        status, body = 0, dict[str, str]()
        while time.monotonic() < deadline:
            try:
                status, body = health(holed)
            except httpx.HTTPError:
                status = 0
            if status == 503:
                break
            time.sleep(0.5)
        assert status == 503, holed.log()[-3000:]
        assert body["status"] == "commit blocked"
        assert f"{source}/0" in body["reason"]
        assert "offset 5 was never acknowledged" in body["reason"]
        assert blocked_gauge(holed, source) == 1.0
        _, committed = asyncio.run(partition_offsets(kafka, source, group))
        assert committed == {0: 5}  # everything after 5 was processed and acknowledged; nothing passed 5
        assert "dropping a record on purpose" in holed.log()
        assert "cannot move: offset 5 was never acknowledged" in holed.log()
    finally:
        assert holed.stop() == 0

    # What the liveness probe does: a new process reads again from the commit; the hole is filled.
    worker = WorkerProcess({**env, "FORWARDER_WEB_PORT": str(free_port())}, tmp_path / "worker.log")
    worker.start()
    try:
        assert asyncio.run(wait_until_committed(kafka, source, group, 90, worker.alive)) == {0: len(bodies)}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and blocked_gauge(worker, source) != 0.0:
            time.sleep(0.5)
        assert blocked_gauge(worker, source) == 0.0
        assert health(worker) == (200, {"status": "alive"})
    finally:
        assert worker.stop() == 0
