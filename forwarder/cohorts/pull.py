"""``forwarder cohorts pull``: a cohort's whole membership from Amplitude's Behavioral Cohorts API, as a snapshot.

Request the export (``GET /api/5/cohorts/request/{id}?props=1&propKeys=<anonymous property>``), poll its status,
download the file (a 302 to object storage is followed by a client that carries no credentials), read the gzip
CSV row by row and write its members to the cohorts topic in parts, keyed by cohort id. Memory holds one part.
Every export counts against Amplitude's monthly quota (500 on Growth and Enterprise plans), so ``--if-changed``
skips a cohort whose ``lastComputed`` has not moved since its last pull (read from the status topic).
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from forwarder.amplitude.dashboard import DashboardAPI, DashboardError
from forwarder.cohorts.members import export_members
from forwarder.cohorts.records import KIND_HEADER, SNAPSHOT, SnapshotPart, snapshot_value
from forwarder.cohorts.requests import Member
from forwarder.cohorts.status import PULL_PREFIX

log = logging.getLogger("forwarder.cohorts")

POLL_S = 5.0
# A snapshot part stays under Kafka's default 1 MB message size, whatever the ids' lengths.
MAX_PART_BYTES = 800_000
MAX_WAIT_S = 3600.0


@dataclass(frozen=True)
class CohortInfo:
    cohort_id: str
    name: str
    size: int | None
    last_computed: int
    archived: bool

    @classmethod
    def of(cls, data: dict[str, Any]) -> CohortInfo:
        return cls(
            cohort_id=str(data.get("id") or ""),
            name=str(data.get("name") or data.get("id") or ""),
            size=data.get("size") if isinstance(data.get("size"), int) else None,
            last_computed=int(data.get("lastComputed") or 0),
            archived=bool(data.get("archived")),
        )


class CohortExports:
    """Amplitude's Behavioral Cohorts API, through the one Dashboard API client."""

    def __init__(self, api: DashboardAPI, *, poll_s: float = POLL_S) -> None:
        self._api = api
        self._poll_s = poll_s

    async def aclose(self) -> None:
        await self._api.aclose()

    async def cohorts(self) -> list[CohortInfo]:
        response = await self._api.get("/api/3/cohorts")
        if response.status_code != 200:
            raise DashboardError(f"listing cohorts: Amplitude answered {response.status_code}")
        return [CohortInfo.of(c) for c in response.json().get("cohorts", []) if isinstance(c, dict)]

    async def download(self, cohort_id: str, prop_key: str, into: io.BufferedWriter) -> int:
        """The export's bytes written to ``into``; returns how many."""
        response = await self._api.get(f"/api/5/cohorts/request/{cohort_id}", {"props": "1", "propKeys": prop_key})
        if response.status_code == 404:
            raise DashboardError(f"cohort {cohort_id}: Amplitude does not know it")
        if response.status_code not in (200, 202):
            raise DashboardError(f"cohort {cohort_id}: the export request was answered {response.status_code}")
        request_id = str(response.json().get("request_id") or "")
        if not request_id:
            raise DashboardError(f"cohort {cohort_id}: the export request gave no request_id")
        waited = 0.0
        while True:
            status = await self._api.get(f"/api/5/cohorts/request-status/{request_id}")
            if status.status_code == 200:
                break
            if status.status_code != 202:
                raise DashboardError(f"cohort {cohort_id}: the export failed ({status.status_code})")
            if waited >= MAX_WAIT_S:
                raise DashboardError(f"cohort {cohort_id}: the export was not ready after {MAX_WAIT_S:.0f} s")
            await self._api.sleep(self._poll_s)
            waited += self._poll_s
        file = await self._api.get(f"/api/5/cohorts/request/{request_id}/file")
        return await self._api.download(file, into, f"cohort {cohort_id}: the export")


def read_rows(path: str) -> Iterator[str]:
    """The CSV's lines, gunzipped when the file is gzip (Amplitude's), as is otherwise."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    opener: Any = gzip.open if gzipped else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
        yield from handle


@dataclass
class PullResult:
    cohort_id: str
    name: str
    members: int
    unmapped: int
    parts: int
    skipped: bool = False


async def write_snapshot(
    producer: AIOKafkaProducer,
    topic: str,
    cohort: CohortInfo,
    members: Iterator[Member | None],
    chunk_members: int,
    progress: Callable[[int], None] | None = None,
) -> PullResult:
    """The membership as snapshot parts; each send is awaited in order, so parts keep their order."""
    snapshot_id = uuid.uuid4().hex
    computed_ms = cohort.last_computed or int(time.time() * 1000)
    key = cohort.cohort_id.encode()
    headers = [(KIND_HEADER, SNAPSHOT)]
    chunk: list[Member] = []
    total = unmapped = parts = chunk_bytes = 0

    async def send(last: bool) -> None:
        nonlocal parts
        part = SnapshotPart(
            cohort.cohort_id,
            cohort.name,
            snapshot_id,
            computed_ms,
            parts,
            last,
            chunk,
            total=total if last else 0,
            unmapped=unmapped if last else 0,
        )
        await (await producer.send(topic, snapshot_value(part), key=key, headers=headers))
        parts += 1
        if progress is not None:
            progress(len(chunk))

    for member in members:
        total += 1
        if member is None:
            unmapped += 1
            continue
        chunk.append(member)
        chunk_bytes += len(member[0]) + len(member[1]) + 8
        if len(chunk) >= chunk_members or chunk_bytes >= MAX_PART_BYTES:
            await send(last=False)
            chunk, chunk_bytes = [], 0
    await send(last=True)
    return PullResult(cohort.cohort_id, cohort.name, total, unmapped, parts)


async def record_pull(producer: AIOKafkaProducer, status_topic: str, cohort: CohortInfo, result: PullResult) -> None:
    value = orjson.dumps(
        {"last_computed": cohort.last_computed, "pulled_at": int(time.time() * 1000), "members": result.members}
    )
    await (await producer.send(status_topic, value, key=(PULL_PREFIX + cohort.cohort_id).encode()))


async def pull_one(
    exports: CohortExports,
    producer: AIOKafkaProducer,
    cohort: CohortInfo,
    *,
    topic: str,
    status_topic: str,
    anonymous_property: str,
    anonymous_field: str,
    chunk_members: int,
    progress: Callable[[int], None] | None = None,
) -> PullResult:
    handle, path = tempfile.mkstemp(prefix=f"cohort-{cohort.cohort_id}-", suffix=".csv.gz")
    try:
        with os.fdopen(handle, "wb") as into:
            await exports.download(cohort.cohort_id, anonymous_property, into)
        members = export_members(read_rows(path), anonymous_property, anonymous_field)
        result = await write_snapshot(producer, topic, cohort, members, chunk_members, progress)
        await record_pull(producer, status_topic, cohort, result)
        return result
    finally:
        os.unlink(path)
