"""One ledger record: the outcomes of one run's messages from one (topic, partition), by hour and campaign.

The key names the source range (``source|topic|partition|first-last``), so a run re-processed with the same
range overwrites its record in the compacted topic, and ``settle`` drops a record whose range later records
cover. The value is JSON, small (one row per distinct (outcome, reason, code, hour, campaign)).

``source`` says what read the events: ``stream`` and ``retry`` are the live worker's two agents (the traffic as it
came in; an event parked in the retry topic is counted when the retry agent settles it, never at the first
pass), ``replay``, ``replay-dlq`` and ``backfill`` re-send, and the report shows them as re-sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from forwarder.core.counting import DEFAULT_ROUTE, Key, OutcomeCounter

# 2: each count names its route; 1 (before routes) is still read, its counts under the default route.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
LIVE_SOURCES = frozenset({"stream", "retry"})
OUTCOMES = frozenset({"delivered", "filtered", "dropped", "dead_lettered", "forwarded"})


class LedgerFormatError(ValueError):
    """A ledger value this version cannot read: the report skips it and says how many it skipped."""


@dataclass(eq=False)  # identity: a run groups its events by the record they go to
class LedgerRecord:
    source: str
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    outcomes: OutcomeCounter = field(default_factory=OutcomeCounter)
    # Parked in the retry topic by this run: counted by the retry agent's record once final.
    deferred: int = 0
    # Event code -> the Amplitude event type it was delivered as (the report's Amplitude comparison).
    event_types: dict[str, str] = field(default_factory=dict)
    written_at_ms: int = 0
    # Records of the retry agent: each event's first source ("topic/partition/offset/index") and where it was
    # counted. A run re-processed after a crash parks its throttled events twice; ``settle`` keeps one.
    origins: list[tuple[str, Key]] = field(default_factory=list)
    # A range Kafka deleted before it was read (reported lost, in the dead-letter topic): no events, but covered.
    lost: bool = False

    def settle(self, key: Key, origin: str | None = None) -> None:
        """One event's final outcome."""
        self.outcomes.counts[key] += 1
        if origin is not None:
            self.origins.append((origin, key))

    @property
    def key(self) -> bytes:
        return f"{self.source}|{self.topic}|{self.partition}|{self.first_offset}-{self.last_offset}".encode()

    @property
    def stream(self) -> tuple[str, str, int]:
        """Records of one stream (same source, topic, partition) can supersede each other."""
        return self.source, self.topic, self.partition

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": FORMAT_VERSION,
                "source": self.source,
                "topic": self.topic,
                "partition": self.partition,
                "first_offset": self.first_offset,
                "last_offset": self.last_offset,
                "deferred": self.deferred,
                "event_types": self.event_types,
                "written_at_ms": self.written_at_ms,
                "counts": [[*key, n] for key, n in self.outcomes.counts.items()],
                **({"origins": [[origin, *key] for origin, key in self.origins]} if self.origins else {}),
                **({"lost": True} if self.lost else {}),
            }
        )

    @classmethod
    def decode(cls, value: bytes) -> LedgerRecord:
        try:
            data = orjson.loads(value)
            if not isinstance(data, dict) or data.get("v") not in READABLE_VERSIONS:
                raise LedgerFormatError(f"not a version {FORMAT_VERSION} ledger record")
            routed = data["v"] >= 2
            record = cls(
                source=_text(data["source"]),
                topic=_text(data["topic"]),
                partition=_number(data["partition"]),
                first_offset=_number(data["first_offset"]),
                last_offset=_number(data["last_offset"]),
                deferred=_number(data.get("deferred", 0)),
                event_types={_text(k): _text(v) for k, v in dict(data.get("event_types") or {}).items()},
                written_at_ms=_number(data.get("written_at_ms", 0)),
                lost=data.get("lost") is True,
            )
            for row in data["counts"]:
                record.outcomes.add_key(_key(row[:-1], routed), _number(row[-1]))
            for row in data.get("origins") or []:
                record.origins.append((_text(row[0]), _key(row[1:], routed)))
        except LedgerFormatError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise LedgerFormatError(f"malformed ledger record: {exc}") from None
        if record.last_offset < record.first_offset:
            raise LedgerFormatError("last_offset is before first_offset")
        return record


def _key(values: list[Any], routed: bool) -> Key:
    if routed:
        outcome, reason, code, hour, campaign, route = values
    else:
        (outcome, reason, code, hour, campaign), route = values, DEFAULT_ROUTE
    if outcome not in OUTCOMES:
        raise LedgerFormatError(f"unknown outcome {outcome!r}")
    return outcome, _text(reason), _text(code), _number(hour), _text(campaign), _text(route)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise LedgerFormatError(f"expected text, got {type(value).__name__}")
    return value


def _number(value: Any) -> int:
    if type(value) is not int:
        raise LedgerFormatError(f"expected an integer, got {type(value).__name__}")
    return value
