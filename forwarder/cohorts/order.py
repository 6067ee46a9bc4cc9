"""Each partition's records to the cohort agent in offset order, each once, whatever faust's buffers do.

Seen on a real broker (``tests/cohorts/test_cohort_worker.py``, a worker started while its killed predecessor was
still a group member): faust handed the agent offset 9, then 15; the records between had been fetched and then
dropped from its stream buffer around the rebalance, and nothing read them again. The commit could not pass them
(acknowledgements are in order), but the agent went on without them: a snapshot missed parts. So the agent
admits a record only when it is the next one of its partition; a later one means records were skipped, and the
partition is sought back to the next one (faust's public ``Consumer.seek``). Records before it were done already.
The first record of a partition (at start, after a rebalance) is checked against the group's committed offset,
where faust began to read: a CI run saw the record at the committed offset itself dropped.
Offsets Kafka no longer has (retention) cannot come back: after three seeks that return past them, they are
reported lost and the agent goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("forwarder.cohorts")

SEEK_EVERY_S = 1.0
SEEKS_BEFORE_GIVING_UP = 3


class OffsetOrder:
    def __init__(
        self,
        seek: Callable[[int, int], Awaitable[None]],
        committed: Callable[[set[int]], Awaitable[dict[int, int]]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``committed(partitions)``: the group's committed offset of each (those never committed left out)."""
        self._seek = seek
        self._committed = committed
        self._clock = clock
        self.expected: dict[int, int] = {}
        self._seeks: dict[int, tuple[int, int, float]] = {}
        self.lost = 0

    async def admit(self, partition: int, offset: int) -> bool:
        """True: process it now. False: done already (``offset`` is behind) or early (records before it are
        being read again)."""
        expected = self.expected.get(partition)
        if expected is None and self._committed is not None:
            expected = (await self._committed({partition})).get(partition)
            if expected is not None:
                self.expected[partition] = expected
        if expected is None or offset == expected:
            return True
        if offset < expected:
            return False
        target, seeks, at = self._seeks.get(partition, (expected, 0, float("-inf")))
        if target == expected and seeks >= SEEKS_BEFORE_GIVING_UP:
            self.lost += offset - expected
            log.error(
                "records no longer in the log were skipped (retention?); counted lost",
                extra={"fields": {"partition": partition, "first": expected, "last": offset - 1}},
            )
            self._seeks.pop(partition, None)
            return True
        if target != expected or self._clock() - at >= SEEK_EVERY_S:
            log.warning(
                "records were skipped by the consumer; reading them again",
                extra={"fields": {"partition": partition, "from": expected, "got": offset}},
            )
            await self._seek(partition, expected)
            self._seeks[partition] = (expected, seeks + 1 if target == expected else 1, self._clock())
        return False

    def done(self, partition: int, offset: int) -> None:
        self.expected[partition] = offset + 1
        self._seeks.pop(partition, None)

    def forget(self, partitions: set[int]) -> None:
        """After a rebalance: the next record of these partitions (from the committed offset) is the start."""
        for partition in partitions:
            self.expected.pop(partition, None)
            self._seeks.pop(partition, None)
