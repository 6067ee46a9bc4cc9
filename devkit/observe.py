"""Reading a running worker from outside: its outcome counts from ``/metrics``, its progress from Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from forwarder.core.counting import DEFAULT_ROUTE, NO_HOUR, OutcomeCounter
from forwarder.kafka.admin import partition_offsets


def scrape_outcomes(metrics_url: str) -> OutcomeCounter:
    """The worker's outcome counts, read back from its ``/metrics`` (``forwarder_events_total``)."""
    outcomes = OutcomeCounter()
    text = httpx.get(metrics_url, timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name != "forwarder_events":
            continue
        for sample in family.samples:
            if sample.name == "forwarder_events_total":
                labels = sample.labels
                outcomes.add_key(
                    (
                        labels["outcome"],
                        labels["reason"],
                        labels["event_code"],
                        NO_HOUR,
                        "",
                        labels.get("route", DEFAULT_ROUTE),
                    ),
                    int(sample.value),
                )
    return outcomes


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


def out_of_user_order(events: list[dict[str, Any]]) -> tuple[str, int, int] | None:
    """The first event (user, its ``seq``, the user's ``seq`` before it) that arrived after a later one of its
    user (events of ``devkit.traffic.numbered_body``, as a local Amplitude service kept them); None: all in order.
    An insert_id seen again (a re-send) is skipped."""
    last: dict[str, int] = {}
    seen: set[str] = set()
    for event in events:
        if event["insert_id"] in seen:
            continue
        seen.add(event["insert_id"])
        user, seq = event["user_id"], event["event_properties"]["seq"]
        if seq <= last.get(user, 0):
            return user, seq, last[user]
        last[user] = seq
    return None
