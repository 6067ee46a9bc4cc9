"""The worker on a broker with a SASL (PLAIN) listener: connects with the right credentials, fails clearly
with wrong ones, and the password never shows."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys

import orjson
import pytest

from devkit.kafka import LocalKafka
from devkit.observe import wait_until_committed
from forwarder.kafka.admin import create_topics
from tests.kafka_helpers import produce
from tests.worker.test_worker_delivery import worker_env

pytestmark = pytest.mark.kafka
PASSWORD = "forwarder-sasl-secret-42"


@pytest.fixture(scope="module")
def sasl_broker():
    broker = LocalKafka(sasl_users={"forwarder": PASSWORD})
    broker.start()
    yield broker
    broker.stop()
    if broker.data_dir is not None:
        shutil.rmtree(broker.data_dir, ignore_errors=True)


def sasl_env(broker: LocalKafka, password: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker.sasl_port}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "forwarder",
        "KAFKA_SASL_PASSWORD": password,
    }


def test_the_worker_delivers_over_sasl(sasl_broker, amplitude, topic_names, worker_factory) -> None:
    service, url = amplitude
    plain = sasl_broker.bootstrap_servers
    source, dlq, retry, group = topic_names("src"), topic_names("dlq"), topic_names("retry"), topic_names("grp")
    asyncio.run(create_topics(plain, {source: 2, dlq: 1, retry: 1}))
    event = {"event_code": "SMS_SENT", "event_uuid": "sasl-1", "uid": "customer-1", "event_time": 1_700_000_000}
    asyncio.run(produce(plain, source, [orjson.dumps(event)]))
    env = {
        **worker_env(plain, url, source, dlq, group),
        **sasl_env(sasl_broker, PASSWORD),
        "FORWARDER_RETRY_TOPIC": retry,
    }
    worker = worker_factory(**env).start()
    asyncio.run(wait_until_committed(plain, source, group, 120, worker.alive))
    assert worker.stop() == 0
    assert set(service.recorder.by_insert_id) == {"sasl-1"}
    assert PASSWORD not in worker.log()


def test_wrong_credentials_fail_clearly_without_showing_the_password(sasl_broker, amplitude) -> None:
    _, url = amplitude
    wrong = "not-the-password-77"
    env = {
        "PATH": "/usr/bin:/bin",
        **sasl_env(sasl_broker, wrong),
        "AMPLITUDE_API_KEY": "test-key",
        "AMPLITUDE_API_URL": url,
    }
    result = subprocess.run(
        [sys.executable, "-m", "forwarder", "worker"], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 1
    assert "cannot use Kafka at" in result.stderr
    assert "SASL PLAIN as 'forwarder'" in result.stderr
    assert "Authentication failed: Invalid username or password" in result.stderr
    assert wrong not in result.stderr + result.stdout
