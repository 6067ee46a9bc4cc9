"""``event_time`` -> integer milliseconds since the epoch (UTC), or a stated reason it cannot be."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

# A number at or above this is already milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
MILLISECONDS_THRESHOLD = 100_000_000_000
# 9999-12-31T23:59:59Z: beyond it no datetime library, and no analytics chart, means anything.
MAX_EPOCH_MS = 253_402_300_799_000


class TimeError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _from_number(value: float) -> int:
    if not math.isfinite(value) or value <= 0:
        raise TimeError("invalid_time", f"event_time {value!r} is not a positive epoch time")
    ms = int(value) if value >= MILLISECONDS_THRESHOLD else round(value * 1000)
    if ms > MAX_EPOCH_MS:
        raise TimeError("invalid_time", f"event_time {value!r} is after the year 9999")
    if ms <= 0:
        raise TimeError("invalid_time", f"event_time {value!r} is not a positive epoch time")
    return ms


def to_epoch_ms(value: Any) -> int:
    if type(value) is int and 0 < value < MILLISECONDS_THRESHOLD:
        return value * 1000  # the common case: whole epoch seconds, as Streams sends them
    if value is None:
        raise TimeError("missing_time", "event_time is missing")
    if isinstance(value, bool):
        raise TimeError("invalid_time", "event_time is a boolean")
    if isinstance(value, int | float):
        return _from_number(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise TimeError("missing_time", "event_time is empty")
        try:
            return _from_number(float(text))
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise TimeError("invalid_time", f"event_time {text[:40]!r} is neither epoch nor ISO-8601") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ms = round(parsed.timestamp() * 1000)
        if ms <= 0:
            raise TimeError("invalid_time", f"event_time {text[:40]!r} is before 1970")
        return ms
    raise TimeError("invalid_time", f"event_time is a {type(value).__name__}")
