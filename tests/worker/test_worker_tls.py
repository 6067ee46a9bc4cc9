"""The product over TLS on a real broker, certificates made here (``devkit.tls``): ``forwarder topics``,
``forwarder ingest`` and the worker end to end over SASL_SSL with SCRAM-SHA-512 (the shipped configuration), and
over SSL with client certificates (mutual TLS); a wrong password or a CA the broker's certificate is not from is one
clear line, never the password."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from devkit.kafka import LocalKafka, free_port
from devkit.observe import wait_until_committed
from devkit.tls import Certificates, make_certificates
from devkit.traffic import streams_requests
from tests.helpers import status_when_up, topic_names_of
from tests.worker.test_worker_delivery import worker_env
from tests.worker.test_worker_faults import sendable

pytestmark = pytest.mark.kafka
PASSWORD = "scram-secret-of-the-forwarder-9"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, Certificates]]:
    certificates = make_certificates(tmp_path_factory.mktemp("tls"))
    broker = LocalKafka(tls=certificates, scram_users={"forwarder": PASSWORD})
    broker.start()
    yield broker, certificates
    broker.stop()
    if broker.data_dir is not None:
        shutil.rmtree(broker.data_dir, ignore_errors=True)


def security(broker: LocalKafka, certificates: Certificates, protocol: str, password: str = PASSWORD) -> dict[str, str]:
    if protocol == "SASL_SSL":
        return {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker.sasl_ssl_port}",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "forwarder",
            "KAFKA_SASL_PASSWORD": password,
            "KAFKA_SSL_CAFILE": str(certificates.ca),
        }
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker.ssl_port}",
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": str(certificates.ca),
        "KAFKA_SSL_CERTFILE": str(certificates.client_cert),
        "KAFKA_SSL_KEYFILE": str(certificates.client_key),
    }


def forwarder(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL"])
def test_topics_ingest_and_the_worker_end_to_end_over_tls(
    tls_broker, amplitude, topic_names, worker_factory, tmp_path: Path, protocol: str
) -> None:
    broker, certificates = tls_broker
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    names = {**topic_names_of(source), "FORWARDER_DLQ_TOPIC": dlq, "FORWARDER_TOPIC_REPLICATION": "1"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FORWARDER_", "COHORTS_"))}
    env = {**clean, **security(broker, certificates, protocol), **names}

    created = forwarder(env, "topics")
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("created ") == 7

    port = free_port()
    ingest_env = {**env, "FORWARDER_INGEST_PORT": str(port), "FORWARDER_INGEST_ALLOW_UNAUTHENTICATED": "true"}
    with open(tmp_path / "ingest.log", "wb") as log:
        ingest = subprocess.Popen([sys.executable, "-m", "forwarder", "ingest"], env=ingest_env, stdout=log, stderr=log)
    bodies = list(streams_requests(300, per_request=100, seed=43))
    try:
        ready = status_when_up(f"http://127.0.0.1:{port}/readyz")
        assert ready == 200, (tmp_path / "ingest.log").read_text()[-2000:]
        for body in bodies:
            answer = httpx.post(
                f"http://127.0.0.1:{port}/moengage/streams", content=orjson.dumps(body),
                headers={"content-type": "application/json"}, timeout=30,
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
    finally:
        ingest.terminate()
        ingest.wait(timeout=30)

    worker = worker_factory(**{**worker_env(broker.bootstrap_servers, url, source, dlq, group), **env}).start()
    asyncio.run(wait_until_committed(broker.bootstrap_servers, source, group, 120, worker.alive))
    assert worker.stop() == 0
    events = [event for body in bodies for event in body["events"]]
    assert set(service.recorder.by_insert_id) == sendable(events)
    print(f"\n{protocol}: {len(events)} events in through ingest, {len(service.recorder.by_insert_id)} delivered")
    assert PASSWORD not in worker.log()


def test_a_wrong_password_and_an_untrusted_ca_are_one_clear_line(tls_broker, tmp_path: Path) -> None:
    broker, certificates = tls_broker
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FORWARDER_", "COHORTS_"))}
    wrong = "not-the-scram-password-3"
    refused = forwarder({**clean, **security(broker, certificates, "SASL_SSL", wrong)}, "topics")
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"forwarder topics: cannot use Kafka at 127.0.0.1:{broker.sasl_ssl_port} (SASL_SSL")
    assert "Authentication failed" in line
    assert wrong not in refused.stderr + refused.stdout

    stranger = make_certificates(tmp_path / "another-ca")  # a CA the broker's certificate was not signed by
    untrusted = {**security(broker, certificates, "SSL"), "KAFKA_SSL_CAFILE": str(stranger.ca)}
    distrusted = forwarder({**clean, **untrusted}, "topics")
    assert distrusted.returncode == 1
    [line] = distrusted.stderr.strip().splitlines()
    assert line.startswith(f"forwarder topics: cannot use Kafka at 127.0.0.1:{broker.ssl_port} (SSL)")
    print(f"\n{refused.stderr.strip()}\n{distrusted.stderr.strip()}")
