"""Builders shared by tests: Forwarded events from the real core, so tests feed the real shapes."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from forwarder.core import Forwarded, MappingRules, process_event


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
