"""``forwarder topics`` against the real broker: creates, verifies, reports drift, fixes it when asked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.helpers import topic_names_of

pytestmark = pytest.mark.kafka


def topics(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", "topics", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_create_verify_report_drift_and_apply(kafka, topic_names) -> None:
    source = topic_names("src")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        **topic_names_of(source),
        "FORWARDER_TOPIC_PARTITIONS": "3",
        "FORWARDER_TOPIC_REPLICATION": "1",
    }

    created = topics(env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("created ") == 7
    assert (
        f"created {source}: 3 partitions, replication 1, cleanup.policy=delete, retention.ms=604800000, "
        "min.insync.replicas=1" in created.stdout
    )
    # The cohort status: one record per cohort, compacted, kept.
    assert (
        f"created {source}-cohorts-status: 1 partitions, replication 1, cleanup.policy=compact, min.insync.replicas=1"
        in created.stdout
    )
    # The ledger: one partition (read in the order written), compacted, kept 90 days.
    assert (
        f"created {source}-ledger: 1 partitions, replication 1, cleanup.policy=compact,delete, retention.ms=7776000000"
        in created.stdout
    )

    again = topics(env)  # idempotent
    assert again.returncode == 0
    assert again.stdout.splitlines() == [
        f"ok {source}",
        f"ok {source}-retry",
        f"ok {source}-dlq",
        f"ok {source}-ledger",
        f"ok {source}-cohorts",
        f"ok {source}-cohorts-dlq",
        f"ok {source}-cohorts-status",
    ]

    drifted = {**env, "FORWARDER_TOPIC_PARTITIONS": "4", "FORWARDER_SOURCE_RETENTION_HOURS": "24"}
    report = topics(drifted)
    assert report.returncode == 3
    assert f"drift {source}: partitions 3 (want 4); retention.ms 604800000 (want 86400000)" in report.stdout
    assert "run with --apply" in report.stderr
    assert topics(drifted).returncode == 3  # reporting changed nothing

    applied = topics(drifted, "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"updated {source}: partitions 3 (want 4); retention.ms 604800000 (want 86400000)" in applied.stdout
    assert topics(drifted).stdout.splitlines()[0] == f"ok {source}"


def test_min_insync_replicas_is_set_its_drift_reported_and_fixed(kafka, topic_names) -> None:
    """acks=all means "the leader alone" when a topic keeps the broker's default min.insync.replicas of 1: the
    topics carry min(2, replication) unless FORWARDER_TOPIC_MIN_INSYNC_REPLICAS says otherwise."""
    source = topic_names("src")
    names = {
        **topic_names_of(source),
    }
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "FORWARDER_TOPIC_REPLICATION": "1", **names}
    assert topics(env).returncode == 0
    asyncio.run(_set_config(kafka, source, {"min.insync.replicas": "2"}))  # drifted by hand
    report = topics(env)
    assert report.returncode == 3
    assert f"drift {source}: min.insync.replicas 2 (want 1)" in report.stdout
    assert topics(env, "--apply").returncode == 0
    assert topics(env).stdout.splitlines()[0] == f"ok {source}"

    refused = topics({**env, "FORWARDER_TOPIC_MIN_INSYNC_REPLICAS": "2"})
    assert refused.returncode == 2
    assert "FORWARDER_TOPIC_MIN_INSYNC_REPLICAS must be at most FORWARDER_TOPIC_REPLICATION (1)" in refused.stderr


async def _set_config(servers: str, topic: str, config: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        current = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        overrides = {
            entry["config_names"]: entry["config_value"]
            for response in current
            for resource in response.to_object()["resources"]
            for entry in resource["config_entries"]
            if entry["config_names"] in ("cleanup.policy", "retention.ms", "min.insync.replicas")
        }
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={**overrides, **config})])
    finally:
        await admin.close()


def test_an_unreachable_broker_is_a_clear_error() -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = subprocess.run(
        [sys.executable, "-m", "forwarder", "topics"], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 1
    assert "cannot use Kafka at 127.0.0.1:1 (PLAINTEXT)" in result.stderr
