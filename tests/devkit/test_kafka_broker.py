"""``make kafka`` gives a usable real broker; ``make kafka-stop`` leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from devkit.kafka import free_port as real_free_port
from forwarder.kafka.admin import create_topics
from tests.kafka_helpers import produce

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


def broker_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "kafka.Kafka" in line and "java" in line]


def test_make_kafka_prints_a_usable_address_and_make_kafka_stop_cleans_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    before = set(broker_processes())
    started = subprocess.run(
        ["make", "-s", "kafka"], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    try:
        assert started.returncode == 0, started.stderr
        last = started.stdout.strip().splitlines()[-1]
        assert last.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:")
        servers = last.split("=", 1)[1]

        async def round_trip() -> list[bytes]:
            await create_topics(servers, {"smoke": 2})
            await produce(servers, "smoke", [b"one", b"two"])
            consumer = AIOKafkaConsumer("smoke", bootstrap_servers=servers, auto_offset_reset="earliest")
            await consumer.start()
            try:
                got: list[bytes] = []
                while len(got) < 2:
                    batch = await consumer.getmany(timeout_ms=1000)
                    got += [r.value for rs in batch.values() for r in rs]
                return sorted(got)
            finally:
                await consumer.stop()

        assert asyncio.run(asyncio.wait_for(round_trip(), 60)) == [b"one", b"two"]
    finally:
        stopped = subprocess.run(
            ["make", "-s", "kafka-stop"], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120
        )
    assert stopped.returncode == 0
    assert set(broker_processes()) - before == set()


def test_a_port_taken_between_choosing_and_binding_is_chosen_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free port can be taken before the JVM binds it (another process's outgoing connection): the broker picks
    new ports and starts, instead of failing the test session that needs it."""
    from devkit import kafka as local

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))  # bound, as a connection's local port is: the JVM cannot bind it
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(local, "free_port", lambda: next(ports, None) or real_free_port())
    broker = local.LocalKafka()
    try:
        servers = broker.start()
        assert servers != f"127.0.0.1:{taken.getsockname()[1]}"
        asyncio.run(create_topics(servers, {"after-a-taken-port": 1}))
    finally:
        broker.stop()
        taken.close()
        if broker.data_dir is not None:
            shutil.rmtree(broker.data_dir, ignore_errors=True)
