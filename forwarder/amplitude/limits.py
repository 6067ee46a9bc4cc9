"""Amplitude's request limits (shared/spec/amplitude-api.md, "Limits"), one place for the whole project."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_events: int
    max_body_bytes: int


# HTTP V2: fewer than 2000 events and under 1 MB per request (413 above). The official SDK batches 200
# at a time; 1000 keeps requests few while far from the event limit.
HTTP_V2 = ApiLimits(max_events=1000, max_body_bytes=1_000_000 - 1)
# Batch API: 2000 events and 20 MB per request.
BATCH = ApiLimits(max_events=2000, max_body_bytes=20_000_000)

LIMITS = {"http": HTTP_V2, "batch": BATCH}
