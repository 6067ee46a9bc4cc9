"""Amplitude's side of the count: the Dashboard REST API's Event Segmentation, per event type and day, next to
what the ledger says was delivered.

Amplitude keeps one event per insert_id, so a re-sent event it already had is not counted twice. Dead letters
re-sent by ``replay-dlq`` were never accepted before, so Amplitude must count each once more; events re-sent by
``replay`` or ``backfill`` may or may not be new to it. So a row is right when Amplitude's count lies between
delivered + dead letters re-sent and that plus the other re-sends. Amplitude counts days in the project's time
zone (``AMPLITUDE_PROJECT_TIMEZONE``): the ledger's hours are filed into the days of the same zone.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any

import orjson

from forwarder.amplitude.dashboard import DashboardAPI, DashboardError
from forwarder.core.mapping import SOURCE
from forwarder.ledger.records import LIVE_SOURCES, LedgerRecord
from forwarder.ledger.report import Window

SEGMENTATION_PATH = "/api/2/events/segmentation"

TypeDay = tuple[str, str]  # (event type, YYYY-MM-DD)


@dataclass(frozen=True)
class Comparison:
    event_type: str
    day: str
    delivered: int
    # Delivered by any re-send; of those, dead letters re-sent by ``replay-dlq`` (new to Amplitude).
    resent: int
    counted: int
    resent_dead_letters: int = 0

    @property
    def verdict(self) -> str:
        least = self.delivered + self.resent_dead_letters
        if self.counted == self.delivered == least:
            return "ok"
        if least <= self.counted <= self.delivered + self.resent:
            return "ok (re-sent)"
        if self.counted < least:
            return f"MISSING {least - self.counted}"
        return f"EXTRA {self.counted - self.delivered - self.resent}"

    @property
    def differs(self) -> bool:
        return not self.verdict.startswith("ok")


@dataclass
class Delivered:
    """Delivered events by (Amplitude event type, day in the project's zone): by the live worker, by any re-send,
    by ``replay-dlq``."""

    live: Counter[TypeDay]
    resent: Counter[TypeDay]
    resent_dead_letters: Counter[TypeDay]

    @property
    def keys(self) -> set[TypeDay]:
        return set(self.live) | set(self.resent)


def delivered_by_type_and_day(settled: Iterable[LedgerRecord], window: Window, zone: tzinfo = UTC) -> Delivered:
    found = Delivered(Counter(), Counter(), Counter())
    for record in settled:
        live = record.source in LIVE_SOURCES
        for (outcome, _, code, hour, *_), n in record.outcomes.counts.items():
            if outcome != "delivered" or not window.holds(hour):
                continue
            key = (record.event_types.get(code, code), datetime.fromtimestamp(hour * 3600, zone).strftime("%Y-%m-%d"))
            (found.live if live else found.resent)[key] += n
            if record.source == "replay-dlq":
                found.resent_dead_letters[key] += n
    return found


def compare(delivered: Delivered, counted: dict[TypeDay, int]) -> list[Comparison]:
    keys = sorted(delivered.keys | {k for k, v in counted.items() if v})
    return [
        Comparison(
            t,
            d,
            delivered.live[t, d],
            delivered.resent[t, d],
            counted.get((t, d), 0),
            delivered.resent_dead_letters[t, d],
        )
        for t, d in keys
    ]


async def daily_counts(api: DashboardAPI, event_type: str, first_day: str, last_day: str) -> dict[str, int]:
    """Events of ``event_type`` with ``$source`` = MOENGAGE, per day (YYYY-MM-DD) in [first_day, last_day]."""
    query = {
        "event_type": event_type,
        "filters": [{"subprop_type": "event", "subprop_key": "$source", "subprop_op": "is", "subprop_value": [SOURCE]}],
    }
    params = {
        "e": orjson.dumps(query).decode(),
        "start": first_day.replace("-", ""),
        "end": last_day.replace("-", ""),
        "m": "totals",
        "i": "1",
    }
    response = await api.get(SEGMENTATION_PATH, params)
    if response.status_code != 200:
        raise DashboardError(
            f"the Amplitude Dashboard API answered HTTP {response.status_code} for {event_type!r}: "
            + response.text[:200].replace("\n", " ")
        )
    return _series(response.content, event_type)


def _series(body: bytes, event_type: str) -> dict[str, int]:
    try:
        data: Any = orjson.loads(body)["data"]
        days = [str(day)[:10] for day in data["xValues"]]
        values = data["series"][0] if data["series"] else [0] * len(days)
        return {day: int(value) for day, value in zip(days, values, strict=True)}
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise DashboardError(f"unexpected Dashboard API answer for {event_type!r}: {exc}") from None


async def amplitude_counts(api: DashboardAPI, days_by_type: dict[str, set[str]]) -> dict[TypeDay, int]:
    """Per event type, its days asked in spans of at most ``MAX_SPAN_DAYS`` (a long ledger stays in bounds)."""
    questions = [(t, first, last) for t, days in sorted(days_by_type.items()) for first, last in spans(days)]
    answers = await asyncio.gather(*(daily_counts(api, t, first, last) for t, first, last in questions))
    return {(t, day): n for (t, _, _), by_day in zip(questions, answers, strict=True) for day, n in by_day.items()}


MAX_SPAN_DAYS = 90


def spans(days: Iterable[str]) -> list[tuple[str, str]]:
    """Days (YYYY-MM-DD) -> (first, last) spans covering them, each at most ``MAX_SPAN_DAYS`` long; a gap of more
    than a week starts a new span rather than asking for the empty days between."""
    found: list[tuple[date, date]] = []
    for day in sorted({date.fromisoformat(d) for d in days}):
        if found and (day - found[-1][1]).days <= 7 and (day - found[-1][0]).days < MAX_SPAN_DAYS:
            found[-1] = (found[-1][0], day)
        else:
            found.append((day, day))
    return [(a.isoformat(), b.isoformat()) for a, b in found]
