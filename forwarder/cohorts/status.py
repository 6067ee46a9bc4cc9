"""Per-cohort status: published by the cohort worker to a compacted topic, read by ``forwarder cohorts status``.

A status topic rather than the worker's table: every worker of the group owns some cohorts, and the table's
changelog holds a key per member (millions), while this topic holds one small record per cohort (and one per
cohort pulled, ``pull|<id>``, which ``cohorts pull --if-changed`` reads).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from forwarder.cohorts.state import CohortStatus
from forwarder.kafka.admin import Connection, read_to_end
from forwarder.text import align

PULL_PREFIX = "pull|"
COLUMNS = (
    "cohort",
    "name",
    "snapshot",
    "sent as uid",
    "sent as anonymous",
    "unmapped",
    "pending",
    "dead-lettered",
    "last sync",
)


class StatusPublisher:
    """Keeps the latest status of each cohort and writes the changed ones at most every ``interval_s``."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, interval_s: float = 1.0) -> None:
        self._producer = producer
        self._topic = topic
        self._interval_s = interval_s
        self._dirty: dict[str, bytes] = {}
        self._last = 0.0

    def changed(self, status: CohortStatus) -> None:
        self._dirty[status.cohort_id] = status.encode()

    async def flush(self, force: bool = False) -> None:
        if not self._dirty or (not force and time.monotonic() - self._last < self._interval_s):
            return
        dirty, self._dirty = self._dirty, {}
        self._last = time.monotonic()
        futures = [await self._producer.send(self._topic, value, key=key.encode()) for key, value in dirty.items()]
        for future in futures:
            await future


async def read_statuses(connection: Connection, topic: str) -> tuple[dict[str, CohortStatus], dict[str, Any]]:
    """(status per cohort id, pull record per cohort id): the latest record of each key."""
    latest: dict[bytes, bytes | None] = {}
    async for message in read_to_end(connection, topic, f"the topic {topic} does not exist (run: forwarder topics)"):
        if message.key is not None:
            latest[message.key] = message.value
    statuses: dict[str, CohortStatus] = {}
    pulls: dict[str, Any] = {}
    for raw_key, value in latest.items():
        if value is None:
            continue
        key = raw_key.decode("utf-8", "replace")
        if key.startswith(PULL_PREFIX):
            pulls[key[len(PULL_PREFIX) :]] = orjson.loads(value)
        else:
            statuses[key] = CohortStatus.decode(value)
    return statuses, pulls


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ms else "-"


def rows(statuses: dict[str, CohortStatus]) -> list[list[str]]:
    return [
        [
            s.cohort_id,
            s.name,
            "-" if s.snapshot_members is None else str(s.snapshot_members),
            str(s.in_uid),
            str(s.in_anonymous),
            str(s.unmapped),
            str(s.pending),
            str(s.dead_lettered),
            _when(s.last_sync_ms),
        ]
        for s in sorted(statuses.values(), key=lambda s: s.cohort_id)
    ]


def render_table(statuses: dict[str, CohortStatus]) -> str:
    if not statuses:
        return "no cohort synced yet"
    return "\n".join(align([list(COLUMNS), *rows(statuses)], text_columns=2))


def render_json(statuses: dict[str, CohortStatus]) -> str:
    return orjson.dumps(
        [orjson.loads(s.encode()) for s in sorted(statuses.values(), key=lambda s: s.cohort_id)],
        option=orjson.OPT_INDENT_2,
    ).decode()
