"""``forwarder ingest`` over HTTPS (``FORWARDER_INGEST_TLS_*``), as a process, with a certificate made here: Basic
credentials never cross the network in clear, and a batch is stored once Kafka acknowledged it."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from devkit.kafka import free_port
from devkit.traffic import streams_requests
from forwarder.kafka.admin import create_topics
from tests.helpers import status_when_up
from tests.kafka_helpers import read_all

pytestmark = pytest.mark.kafka


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    names = ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run([*request, *names], check=True, capture_output=True)
    return cert, key


def test_ingest_serves_https_and_stores_a_batch(kafka, topic_names, tmp_path) -> None:
    topic = topic_names("ingest-tls")
    asyncio.run(create_topics(kafka, {topic: 1, f"{topic}-dlq": 1}))
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FORWARDER_", "COHORTS_"))},
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "FORWARDER_SOURCE_TOPIC": topic,
        "FORWARDER_DLQ_TOPIC": f"{topic}-dlq",
        "FORWARDER_INGEST_PORT": str(port),
        "FORWARDER_INGEST_BASIC_AUTH": "moengage:tls-secret",
        "FORWARDER_INGEST_TLS_CERTFILE": str(cert),
        "FORWARDER_INGEST_TLS_KEYFILE": str(key),
    }
    with open(tmp_path / "ingest.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "forwarder", "ingest"], env=env, stdout=log, stderr=log)
    base = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        assert status_when_up(f"{base}/readyz", verify=trusted) == 200, (tmp_path / "ingest.log").read_text()[-2000:]
        body = next(streams_requests(20, seed=41))
        stored = httpx.post(
            f"{base}/moengage/streams", content=orjson.dumps(body), auth=("moengage", "tls-secret"),
            headers={"content-type": "application/json"}, verify=trusted, timeout=30,
        )  # fmt: skip
        assert (stored.status_code, stored.json()) == (200, {"status": "stored", "events": 20})
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on the TLS port
            httpx.post(f"http://127.0.0.1:{port}/moengage/streams", content=b"{}", timeout=5).raise_for_status()
        records = asyncio.run(read_all(kafka, topic, expected=1))
        assert sum(len(orjson.loads(r.value)["events"]) for r in records) == 20
    finally:
        process.terminate()
        process.wait(timeout=30)
