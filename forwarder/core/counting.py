"""One tally of outcomes, keyed by (outcome, reason, event code, hour, campaign, route): behind the metrics, the
batch log line, the reconciliation ledger, every command's summary and the demo.

``hour`` is the event's own time in whole hours since the epoch (UTC), ``NO_HOUR`` when it has none that parses;
``campaign`` is its campaign id as text, empty when it has none; ``route`` the route (Amplitude project) it was
taken by, ``default`` without a routes file. Views that do not ask for them sum them away.

Outcomes: ``forwarded`` (mapped and to be sent: dry runs and ``transform`` stop there), then the final ones,
``delivered``, ``filtered``, ``dropped`` and ``dead_lettered``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import assert_never

from forwarder.core.outcomes import Dropped, Filtered, Forwarded, Invalid, Outcome

Key = tuple[str, str, str, int, str, str]
NO_HOUR = -1
# The one route of a deployment without a routes file (and of ledger records written before routes).
DEFAULT_ROUTE = "default"


def outcome_key(outcome: Outcome, hour: int = NO_HOUR, campaign: str = "", route: str = DEFAULT_ROUTE) -> Key:
    match outcome:
        case Forwarded(code=code):
            return ("forwarded", "", code, hour, campaign, route)
        case Filtered(code=code, reason=reason):
            return ("filtered", reason, code, hour, campaign, route)
        case Dropped(code=code, reason=reason):
            return ("dropped", reason, code, hour, campaign, route)
        case Invalid(code=code, reason=reason):
            return ("dead_lettered", reason, code or "", hour, campaign, route)
        case _:
            assert_never(outcome)


class OutcomeCounter:
    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[Key] = Counter()

    def count(
        self, outcome: Outcome, n: int = 1, hour: int = NO_HOUR, campaign: str = "", route: str = DEFAULT_ROUTE
    ) -> None:
        self.counts[outcome_key(outcome, hour, campaign, route)] += n

    def delivered(
        self, code: str, n: int = 1, hour: int = NO_HOUR, campaign: str = "", route: str = DEFAULT_ROUTE
    ) -> None:
        self.counts["delivered", "", code, hour, campaign, route] += n

    def dead_lettered(
        self, reason: str, code: str, n: int = 1, hour: int = NO_HOUR, campaign: str = "", route: str = DEFAULT_ROUTE
    ) -> None:
        self.counts["dead_lettered", reason, code, hour, campaign, route] += n

    def add_key(self, key: Key, n: int) -> None:
        self.counts[key] += n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutcomeCounter) and self.counts == other.counts

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def add(self, other: OutcomeCounter) -> None:
        self.counts.update(other.counts)

    @property
    def read(self) -> int:
        return sum(self.counts.values())

    def total(self, outcome: str) -> int:
        return sum(n for key, n in self.counts.items() if key[0] == outcome)

    def reasons(self, outcome: str) -> Counter[str]:
        return self.reasons_of((outcome,))[outcome]

    def reasons_of(self, outcomes: Iterable[str]) -> dict[str, Counter[str]]:
        """``reasons`` of several outcomes in one pass (a run has ~1,000 keys)."""
        found: dict[str, Counter[str]] = {outcome: Counter() for outcome in outcomes}
        for (kind, reason, *_), n in self.counts.items():
            if (by_reason := found.get(kind)) is not None:
                by_reason[reason] += n
        return found

    @property
    def by_outcome(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for key, n in self.counts.items():
            found[key[0]] += n
        return found

    @property
    def by_reason(self) -> Counter[tuple[str, str]]:
        found: Counter[tuple[str, str]] = Counter()
        for (kind, reason, *_), n in self.counts.items():
            if reason:
                found[kind, reason] += n
        return found

    @property
    def by_code(self) -> Counter[tuple[str, str, str]]:
        """(outcome, reason, event code): the labels of ``forwarder_events_total``."""
        found: Counter[tuple[str, str, str]] = Counter()
        for (kind, reason, code, *_), n in self.counts.items():
            found[kind, reason, code] += n
        return found

    @property
    def by_labels(self) -> Counter[tuple[str, str, str, str]]:
        """(outcome, reason, event code, route): the labels of ``forwarder_events_total``."""
        found: Counter[tuple[str, str, str, str]] = Counter()
        for (kind, reason, code, _, _, route), n in self.counts.items():
            found[kind, reason, code, route] += n
        return found

    @property
    def by_route(self) -> dict[str, OutcomeCounter]:
        found: dict[str, OutcomeCounter] = {}
        for key, n in self.counts.items():
            found.setdefault(key[5], OutcomeCounter()).counts[key] += n
        return found
