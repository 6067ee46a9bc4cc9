"""The last records of a partition dropped after they were fetched, with nothing written after them: the guard
never sees a hole (no later record arrives), so only the stall shows it. The watchdog then seeks the partition back
over what never reached the agent, and everything is delivered and committed without a restart.

The drop is made on purpose (``tests/worker/tail_drop.py``), as faust made it in the rebalance storm: a retry
topic partition that was never committed, its fetched records cleared from the stream buffer by a rebalance.
"""

from __future__ import annotations

import asyncio

import pytest

from devkit.kafka import free_port
from devkit.observe import wait_until_committed
from tests.conftest import WorkerProcess
from tests.kafka_helpers import one_partition_of_streams
from tests.worker.test_worker_delivery import worker_env
from tests.worker.test_worker_faults import sendable

pytestmark = pytest.mark.kafka


def test_records_dropped_at_the_end_of_a_partition_are_read_again_once_it_stalls(
    kafka, amplitude, topic_names, tmp_path
):
    service, url = amplitude
    source, dlq, group, bodies = one_partition_of_streams(kafka, topic_names, seed=7)
    env = {
        **worker_env(kafka, url, source, dlq, group),
        "FORWARDER_STALL_TIMEOUT_S": "10",
        "FORWARDER_WEB_PORT": str(free_port()),
        "TAIL_DROP": f"0:{len(bodies) - 5}",  # the last five records, never followed by another
    }
    worker = WorkerProcess(env, tmp_path / "worker.log", "tests.worker.tail_drop")
    worker.start()
    try:
        committed = asyncio.run(wait_until_committed(kafka, source, group, 120, worker.alive))
        assert committed == {0: len(bodies)}, worker.log()[-3000:]
        log = worker.log()
        assert log.count("tail_drop: dropping a record on purpose") == 5
        assert "stalled: no message taken" in log
        assert "never reached its agent; reading them again" in log
        # Each seek (the first assignment's, the watchdog's) ran on the consumer's thread, never beside its fetches.
        assert "seek called on the app's thread" not in log
        assert "KeyError" not in log
        events = [event for body in bodies for event in body["events"]]
        assert set(service.recorder.by_insert_id) == sendable(events)
    finally:
        assert worker.stop() == 0
