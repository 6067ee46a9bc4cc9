"""``forwarder ingest`` says at start whether Kafka can be used, and starts anyway: MoEngage's batches get 503
(retried) and ``/readyz`` 503 until it can, instead of a service that is not there at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from devkit.kafka import free_port
from tests.helpers import status_when_up


def test_ingest_starts_with_kafka_unreachable_says_so_and_is_not_ready(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FORWARDER_", "COHORTS_"))},
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "FORWARDER_INGEST_PORT": str(port),
        "FORWARDER_INGEST_ALLOW_UNAUTHENTICATED": "true",
        "FORWARDER_INGEST_KAFKA_TIMEOUT_S": "2",
    }
    log_path = tmp_path / "ingest.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "forwarder", "ingest"], env=env, stdout=log, stderr=log)
    try:
        assert status_when_up(f"http://127.0.0.1:{port}/healthz") == 200, log_path.read_text()[-2000:]
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 503
        said = log_path.read_text()
        assert "cannot use Kafka at 127.0.0.1:1 (PLAINTEXT)" in said
        assert "starting anyway: /readyz answers 503 until Kafka can be used" in said
    finally:
        process.terminate()
        process.wait(timeout=30)
