"""Builders shared by tests: Forwarded events from the real core, so tests feed the real shapes."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from typing import Any

import httpx

from forwarder.core import Forwarded, MappingRules, process_event


class ManualClock:
    """A clock that moves only when a test moves it (``clock.now += 60``)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def forwarded(n: int, *, uid_prefix: str = "customer", code: str = "SMS_SENT", **extra: Any) -> list[Forwarded]:
    items = []
    for i in range(n):
        outcome = process_event(
            {
                "event_code": code,
                "event_uuid": f"ev-{uid_prefix}-{i}",
                "uid": f"{uid_prefix}-{i:05d}",
                "event_time": 1_700_000_000 + i,
                **extra,
            },
            MappingRules(),
        )
        assert isinstance(outcome, Forwarded)
        items.append(outcome)
    return items


def run_forwarder(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``forwarder ARGS`` as an operator runs it: a process of its own, its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "forwarder", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def topic_names_of(source: str) -> dict[str, str]:
    """Both halves' seven topics, named after ``source``, as ``forwarder topics`` and ``forwarder check`` read them."""
    return {
        "FORWARDER_SOURCE_TOPIC": source,
        "FORWARDER_RETRY_TOPIC": source + "-retry",
        "FORWARDER_DLQ_TOPIC": source + "-dlq",
        "FORWARDER_LEDGER_TOPIC": source + "-ledger",
        "COHORTS_TOPIC": source + "-cohorts",
        "COHORTS_DLQ_TOPIC": source + "-cohorts-dlq",
        "COHORTS_STATUS_TOPIC": source + "-cohorts-status",
    }


def status_when_up(url: str, timeout_s: float = 60, verify: ssl.SSLContext | bool = True) -> int:
    """The first status a starting service answers ``url`` with (0: it never answered)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return httpx.get(url, timeout=5, verify=verify).status_code
        except httpx.HTTPError:
            time.sleep(0.3)
    return 0
