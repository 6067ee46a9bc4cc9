"""``cohorts pull --schedule``: the next whole hour, or the next midnight (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

from forwarder.cohorts.commands import next_run


def test_the_schedule_wakes_at_the_next_whole_hour_or_midnight() -> None:
    now = datetime(2026, 11, 29, 3, 7, 12, tzinfo=UTC)
    assert next_run(now, "hourly") == datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
    assert next_run(now, "daily") == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    midnight = datetime(2026, 12, 31, 0, 0, tzinfo=UTC)
    assert next_run(midnight, "daily") == datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
