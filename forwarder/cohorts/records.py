"""The records of the cohorts topic: what ``ingest`` and ``cohorts pull`` write and the cohort worker reads.

Every record is keyed by cohort id, so one cohort's changes stay in one partition, in order. Two kinds, told
apart by the ``kind`` header:

- ``webhook``: a Cohort Webhooks body exactly as Amplitude posted it (parsed by the worker, so a body the worker
  cannot read is dead-lettered with its bytes, never lost at the door);
- ``snapshot``: one part of a whole membership pulled by ``cohorts pull``. A 2,000,000-member cohort does not fit
  one Kafka record, so a snapshot is a run of parts sharing a ``snapshot_id``; the last part says so and carries
  the totals. Members who are neither in a part nor in the state are the snapshot's removals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from forwarder.cohorts.members import CohortChange, PayloadError, parse_webhook
from forwarder.cohorts.requests import Member
from forwarder.core.timeparse import TimeError, to_epoch_ms

KIND_HEADER = "kind"
WEBHOOK = b"webhook"
SNAPSHOT = b"snapshot"


@dataclass(frozen=True)
class SnapshotPart:
    cohort_id: str
    cohort_name: str
    snapshot_id: str
    # The membership as of this time (Amplitude's ``lastComputed``): a change stamped later wins over it.
    computed_ms: int
    part: int
    last: bool
    members: list[Member]
    # Totals of the whole snapshot, on its last part only.
    total: int = 0
    unmapped: int = 0


@dataclass(frozen=True)
class WebhookChange:
    change: CohortChange
    # ``computed_time`` of the body, else the time the record was received.
    time_ms: int


Record = WebhookChange | SnapshotPart


def snapshot_value(part: SnapshotPart) -> bytes:
    return orjson.dumps(
        {
            "cohort_id": part.cohort_id,
            "cohort_name": part.cohort_name,
            "snapshot_id": part.snapshot_id,
            "computed_ms": part.computed_ms,
            "part": part.part,
            "last": part.last,
            "total": part.total,
            "unmapped": part.unmapped,
            "members": part.members,
        }
    )


def change_time_ms(computed_time: str, received_ms: int) -> int:
    try:
        return to_epoch_ms(computed_time) if computed_time else received_ms
    except TimeError:
        return received_ms


def decode(value: bytes, headers: Sequence[tuple[str, bytes]], received_ms: int) -> Record:
    """Raises ``PayloadError`` (one line) for a record the worker cannot use."""
    kind = dict(headers).get(KIND_HEADER, WEBHOOK)
    if kind == WEBHOOK:
        change = parse_webhook(value)
        return WebhookChange(change, change_time_ms(change.computed_time, received_ms))
    if kind != SNAPSHOT:
        raise PayloadError(f"unknown record kind {kind[:40]!r}")
    try:
        data: Any = orjson.loads(value)
        members = [(str(f), str(v)) for f, v in data["members"]]
        return SnapshotPart(
            cohort_id=str(data["cohort_id"]),
            cohort_name=str(data.get("cohort_name") or data["cohort_id"]),
            snapshot_id=str(data["snapshot_id"]),
            computed_ms=int(data["computed_ms"]),
            part=int(data["part"]),
            last=bool(data["last"]),
            members=members,
            total=int(data.get("total") or 0),
            unmapped=int(data.get("unmapped") or 0),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"not a snapshot part: {type(exc).__name__}: {exc}"[:200]) from None
