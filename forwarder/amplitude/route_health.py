"""Whether one route's Amplitude project answers, shared by a worker's agents: one failing project must never hold
up the others.

A route whose Amplitude keeps failing (5xx, timeouts, connection errors, or a refused key) for longer than
``FORWARDER_ROUTE_PARK_AFTER_S`` is *parked*: the source agent hands its events to the retry topic (due after a
back-off that doubles up to 10 minutes) and moves on, so the partition's other routes keep flowing. The retry agent
goes on trying them in place, in order; the first answer *drains* the route: its new events still go through the
retry topic, behind the parked ones, until the retry topic is read to its end, so a user's events never overtake
each other. Then it flows again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["flowing", "parked", "draining"]
MAX_PARK_S = 600.0


class RouteHealth:
    def __init__(self, name: str, park_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.park_after_s = park_after_s
        self.state: State = "flowing"
        self._clock = clock
        self._failing_since: float | None = None
        self._parks = 0
        # Runs holding events of this route they decided to park and have not yet stored on the retry topic, and
        # how many such runs stored theirs: the retry topic read to its end means nothing only while both hold still.
        self._unwritten = 0
        self._written = 0

    @property
    def parked(self) -> bool:
        """Its events go to the retry topic (parked, or draining behind what was parked)."""
        return self.state != "flowing"

    def failed(self) -> None:
        if self._failing_since is None:
            self._failing_since = self._clock()

    def answered(self) -> None:
        self._failing_since = None
        if self.state == "parked":
            self.state = "draining"

    def should_park(self) -> bool:
        since = self._failing_since
        return since is not None and self._clock() - since >= self.park_after_s

    def park(self) -> None:
        if self.state != "parked":
            self._parks += 1
        self.state = "parked"

    def delay_s(self) -> float:
        """How long events parked now wait before the retry agent tries them: doubling with each park, at most
        10 minutes; none while draining (they only queue up behind the parked ones)."""
        if self.state == "draining":
            return 0.0
        return min(MAX_PARK_S, self.park_after_s * float(2 ** max(0, self._parks - 1)))

    def parking(self) -> None:
        self._unwritten += 1

    def written(self) -> None:
        self._unwritten -= 1
        self._written += 1

    def stillness(self) -> tuple[int, int] | None:
        """A mark to compare before and after reading the retry topic's offsets; None while a run is parking."""
        return None if self._unwritten else (self._written, self._unwritten)

    def drained(self, mark: tuple[int, int] | None) -> None:
        """The retry topic was read to its end (``mark``: ``stillness()`` from before looking), and no run of
        this worker parked meanwhile: nothing parked is left to overtake."""
        if self.state == "draining" and mark is not None and mark == self.stillness():
            self.state = "flowing"
            self._parks = 0
