"""The cohort worker, like the forwarder's: the last records of a partition dropped after they were fetched, with
nothing written after them, are found by the stall watch and read again; the segment ends exact without a restart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.cohorts_demo import cohort_rig, demo_members

pytestmark = pytest.mark.kafka


def test_snapshot_parts_dropped_at_the_end_of_a_partition_are_read_again_once_the_worker_idles(
    kafka: str, tmp_path: Path
) -> None:
    with cohort_rig(kafka, tmp_path, partitions=1) as rig:
        members, known = demo_members(2000)
        rig.moengage.known |= known
        rig.define_cohort({"id": "c1", "name": "Buyers", "members": members})
        rig.env["COHORTS_SNAPSHOT_CHUNK_MEMBERS"] = "500"  # four parts, at offsets 0 to 3
        worker = rig.start_worker(
            "tests.cohorts.tail_drop",
            TAIL_DROP="0:2",  # the snapshot's last two parts, never followed by another record
            COHORTS_STALL_TIMEOUT_S="10",
        )
        pulled = rig.command("pull", "--cohort", "c1")
        assert pulled.returncode == 0, pulled.stderr
        rig.wait_until_synced(timeout_s=120, cohort_id="c1")
        assert rig.segment("c1") == rig.expected("c1")
        log = rig.worker_log(0)
        assert log.count("tail_drop: dropping a record on purpose") >= 2
        assert "stalled: no message taken" in log
        assert "never reached its agent; reading them again" in log
        assert worker.poll() is None  # repaired in place, not by a restart
