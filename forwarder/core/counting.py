"""One tally of outcomes, keyed by (outcome, reason, event code): behind the metrics, the batch log line, every
command's summary and the demo.

Outcomes: ``forwarded`` (mapped and to be sent: dry runs and ``transform`` stop there), then the final ones,
``delivered``, ``filtered``, ``dropped`` and ``dead_lettered``.
"""

from __future__ import annotations

from collections import Counter
from typing import assert_never

from forwarder.core.outcomes import Dropped, Filtered, Forwarded, Invalid, Outcome

Key = tuple[str, str, str]


class OutcomeCounter:
    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[Key] = Counter()

    def count(self, outcome: Outcome, n: int = 1) -> None:
        key: Key
        match outcome:
            case Forwarded(code=code):
                key = ("forwarded", "", code)
            case Filtered(code=code, reason=reason):
                key = ("filtered", reason, code)
            case Dropped(code=code, reason=reason):
                key = ("dropped", reason, code)
            case Invalid(code=code, reason=reason):
                key = ("dead_lettered", reason, code or "")
            case _:
                assert_never(outcome)
        self.counts[key] += n

    def delivered(self, code: str, n: int = 1) -> None:
        self.counts["delivered", "", code] += n

    def dead_lettered(self, reason: str, code: str, n: int = 1) -> None:
        self.counts["dead_lettered", reason, code] += n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutcomeCounter) and self.counts == other.counts

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def add(self, other: OutcomeCounter) -> None:
        self.counts.update(other.counts)

    @property
    def read(self) -> int:
        return sum(self.counts.values())

    def total(self, outcome: str) -> int:
        return sum(n for (kind, _, _), n in self.counts.items() if kind == outcome)

    def reasons(self, outcome: str) -> Counter[str]:
        found: Counter[str] = Counter()
        for (kind, reason, _), n in self.counts.items():
            if kind == outcome:
                found[reason] += n
        return found

    @property
    def by_outcome(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for (kind, _, _), n in self.counts.items():
            found[kind] += n
        return found

    @property
    def by_reason(self) -> Counter[tuple[str, str]]:
        found: Counter[tuple[str, str]] = Counter()
        for (kind, reason, _), n in self.counts.items():
            if reason:
                found[kind, reason] += n
        return found
