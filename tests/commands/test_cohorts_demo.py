"""``make cohorts-demo`` (``forwarder cohorts demo``): exits 0 and both of its checks say OK."""

from __future__ import annotations

import os

import pytest

from tests.helpers import run_forwarder

pytestmark = pytest.mark.kafka


def test_the_cohorts_demo_keeps_the_segment_equal_to_the_members_moengage_knows(kafka: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka}
    result = run_forwarder(env, "cohorts", "demo", "--users", "600", "--leave", "40", "--join", "30", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "600 members written as a snapshot" in result.stdout
    assert result.stdout.count("segment = cohort members MoEngage knows") == 2
    assert result.stdout.count(": OK") == 2
    assert "Amplitude cohort demo1: 590 members" in result.stdout  # 600 - 40 + 30
    assert "sent as anonymous" in result.stdout  # the status table
