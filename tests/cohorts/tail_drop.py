"""``python -m tests.cohorts.tail_drop cohorts worker``: the cohort worker, guard on, whose consumer drops the last
records of a partition the first time they are handed over, before the guard sees them, as faust drops records it
fetched when a rebalance clears the stream buffers. ``TAIL_DROP=partition:offset`` drops that offset and every later
one, once each (``tests/cohorts/test_cohort_tail_drop.py``). Never used by the product.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from forwarder.cli import main
from forwarder.cohorts.loop import CohortLoop

log = logging.getLogger("forwarder.order")
partition_text, _, offset_text = os.environ["TAIL_DROP"].partition(":")
PARTITION, FROM_OFFSET = int(partition_text), int(offset_text)
dropped: set[int] = set()
take = CohortLoop.take


async def dropping_the_tail(self: CohortLoop, event: Any) -> None:
    message = event.message
    if message.partition == PARTITION and message.offset >= FROM_OFFSET and message.offset not in dropped:
        dropped.add(message.offset)
        log.warning("tail_drop: dropping a record on purpose", extra={"fields": {"offset": message.offset}})
        return
    await take(self, event)


CohortLoop.take = dropping_the_tail  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
