"""``make run`` (``forwarder demo``): exits 0 and its last lines report counts that add up."""

from __future__ import annotations

import os
import re

import pytest

from tests.helpers import run_forwarder

pytestmark = pytest.mark.kafka


def test_the_demo_forwards_everything_and_the_counts_add_up(kafka: str) -> None:
    # The demo uses the session's broker through KAFKA_BOOTSTRAP_SERVERS, as an operator's would.
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka}
    result = run_forwarder(env, "demo", "--events", "2000", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    numbers = {
        key: int(value)
        for key, value in re.findall(r"^(read|delivered|filtered|dropped|dead-lettered): (\d+)", result.stdout, re.M)
    }
    assert numbers["read"] == 2000
    assert numbers["read"] == numbers["delivered"] + numbers["filtered"] + numbers["dropped"] + numbers["dead-lettered"]
    assert numbers["delivered"] > 0
    assert numbers["filtered"] > 0
    assert numbers["dropped"] > 0
    # The reconciliation report from the ledger: its totals balance, its rows by code equal the worker's own
    # counts, and the local Amplitude service's Dashboard API counted what was delivered on every row.
    assert "read 2000 = delivered" in result.stdout
    assert result.stdout.count(": OK") >= 2
    assert "report rows by event code equal the worker's own counts: OK" in result.stdout
    counted = re.search(r"counted what was delivered for (\d+) of (\d+)", result.stdout)
    assert counted is not None
    assert counted.group(1) == counted.group(2)
    assert any(line.startswith("chart: ") for line in lines)
    # The taxonomy of the local project: the forwarded event types created, Delivery events inactive, then in order.
    assert "44 of 44 forwarded event types differed" in result.stdout
    assert lines[-1] == "the taxonomy holds all 44 forwarded MoEngage event types as they should be"
    accepted = int(re.search(r"accepted (\d+) events", result.stdout).group(1))  # type: ignore[union-attr]
    assert accepted == numbers["delivered"]
