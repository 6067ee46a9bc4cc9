"""Shared fixtures: one real Apache Kafka broker per session, the local Amplitude service per test."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from devkit.amplitude import AmplitudeService, ServiceThread
from devkit.kafka import broker_for, free_port, stop_pid

# Timing goals live in bench/, never in tests: no hypothesis deadlines or speed health checks.
settings.register_profile("forwarder", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("forwarder")

ROOT = Path(__file__).resolve().parents[1]
_names = itertools.count()


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap servers of a real Apache Kafka broker (started on demand, stopped at the end)."""
    with broker_for("tests") as servers:
        yield servers


@pytest.fixture
def topic_names() -> Callable[[str], str]:
    """Fresh topic and group names per test, so tests on the one broker never see each other's data."""

    def make(prefix: str) -> str:
        return f"{prefix}-{os.getpid()}-{next(_names)}"

    return make


@pytest.fixture
def amplitude() -> Iterator[tuple[AmplitudeService, str]]:
    service = AmplitudeService(api_keys={"test-key"})
    runner = ServiceThread(service.app)
    url = runner.start()
    yield service, url
    runner.stop()


class WorkerProcess:
    """``forwarder worker`` as operators run it: a separate process, its log kept for assertions."""

    def __init__(self, env: dict[str, str], log_path: Path, module: str = "forwarder", cwd: Path = ROOT) -> None:
        """``module``: what ``python -m`` runs (a test may wrap the worker); ``cwd``: whose code it runs (``python -m``
        imports from the working directory first)."""
        self.env = env
        self.log_path = log_path
        self.module = module
        self.cwd = cwd
        self.web_port = int(env["FORWARDER_WEB_PORT"])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30) -> int | None:
        if self.process is None:
            return None
        stop_pid(self.process.pid, timeout_s, self.process)
        code = self.process.returncode
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5).text

    def readiness(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.web_port}/readyz", timeout=5).json()
        return body


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def make(**env: str) -> WorkerProcess:
        full = {
            **os.environ,
            "FORWARDER_WEB_PORT": str(free_port()),
            "FORWARDER_BATCH_WINDOW_S": "0.2",
            "FORWARDER_SESSION_TIMEOUT_S": "10",
            **env,
        }
        worker = WorkerProcess(full, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop(timeout_s=10)


def run(coro):
    return asyncio.run(coro)
