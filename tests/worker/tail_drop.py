"""``python -m tests.worker.tail_drop worker``: the worker, guard on, whose consumer drops the last records of a
partition the first time they are handed over, before the guard sees them: as faust drops the records it fetched
when a rebalance clears the stream buffers, on a partition nothing is written to after them (the retry topic, seen
in the rebalance storm). ``TAIL_DROP=partition:offset`` drops that offset and every later one, once each
(``tests/worker/test_tail_drop.py``). Never used by the product.

It also says when aiokafka's ``seek`` runs on the app's thread instead of the consumer's: the fetcher's records are
changed under the consumer thread's feet (a KeyError that crashed workers in the rebalance storm).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer

from forwarder.cli import main
from forwarder.kafka.order import OffsetGuard

log = logging.getLogger("forwarder.order")
partition_text, _, offset_text = os.environ["TAIL_DROP"].partition(":")
PARTITION, FROM_OFFSET = int(partition_text), int(offset_text)
dropped: set[int] = set()
admit_all = OffsetGuard.admit_all


async def dropping_the_tail(self: OffsetGuard, batch: Sequence[Any]) -> list[Any]:
    kept = []
    for taken in batch:
        message = taken.message
        if message.partition == PARTITION and message.offset >= FROM_OFFSET and message.offset not in dropped:
            dropped.add(message.offset)
            log.warning("tail_drop: dropping a record on purpose", extra={"fields": {"offset": message.offset}})
            continue
        kept.append(taken)
    return await admit_all(self, kept)


aiokafka_seek = AIOKafkaConsumer.seek


def seek_on_its_thread(self: AIOKafkaConsumer, partition: Any, offset: int) -> None:
    if threading.current_thread() is threading.main_thread():
        log.error("tail_drop: aiokafka's seek called on the app's thread", extra={"fields": {"offset": offset}})
    aiokafka_seek(self, partition, offset)


OffsetGuard.admit_all = dropping_the_tail  # type: ignore[method-assign]
AIOKafkaConsumer.seek = seek_on_its_thread

if __name__ == "__main__":
    main()
