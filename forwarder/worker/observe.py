"""Reading a running worker from outside: its outcome counts from ``/metrics``, its progress from Kafka."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from forwarder.kafka.admin import partition_offsets


@dataclass
class OutcomeTotals:
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def read(self) -> int:
        return sum(self.by_outcome.values())


def scrape_outcomes(metrics_url: str) -> OutcomeTotals:
    totals = OutcomeTotals()
    text = httpx.get(metrics_url, timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name != "forwarder_events":
            continue
        for sample in family.samples:
            if sample.name != "forwarder_events_total":
                continue
            outcome, reason = sample.labels["outcome"], sample.labels["reason"]
            totals.by_outcome[outcome] += int(sample.value)
            if reason:
                totals.by_reason[outcome, reason] += int(sample.value)
    return totals


async def wait_until_committed(
    servers: str, topic: str, group: str, timeout_s: float, alive: Callable[[], bool] | None = None
) -> dict[int, int]:
    """Waits until the group's committed offsets reach the end of every partition of ``topic``."""
    deadline = time.monotonic() + timeout_s
    while True:
        ends, committed = await partition_offsets(servers, topic, group)
        if ends and all(committed.get(p, 0) >= end for p, end in ends.items()):
            return committed
        if time.monotonic() > deadline:
            raise TimeoutError(f"group {group} committed {committed}, partitions end at {ends}")
        if alive is not None and not alive():
            raise RuntimeError("the worker exited before it had committed everything")
        await asyncio.sleep(0.5)
