"""Offsets of the live topics that no ledger record covers, below the group's committed offset: never processed.

Every run writes its ledger record before its offsets are acknowledged, so the processed ranges of a partition of
the source or retry topic cover it without a gap from the first record the ledger holds up to the committed offset.
A hole there means the commit passed records no agent processed (the faust skip the offset guard exists for). The
live topics are delete-policy: a hole is never compaction. Offsets Kafka deleted before they were read are covered
by a record of their own (``lost``), written when the loss was reported, and listed apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping

from forwarder.kafka.order import OffsetRange
from forwarder.ledger.records import LIVE_SOURCES, LedgerRecord


def find_holes(
    records: Iterable[LedgerRecord], committed: Mapping[tuple[str, int], int], topics: Collection[str]
) -> list[OffsetRange]:
    """``records``: every ledger record read (superseded ones too: they were processed); ``committed``: the
    group's committed offset per (topic, partition) of ``topics``."""
    spans: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for record in records:
        if record.source in LIVE_SOURCES and record.topic in topics:
            spans[record.topic, record.partition].append((record.first_offset, record.last_offset))
    holes: list[OffsetRange] = []
    for key in sorted(spans):
        end = committed.get(key)
        if end is None:
            continue
        ranges = sorted(spans[key])
        covered_to = ranges[0][0]
        for first, last in ranges:
            if first >= end:
                break
            if first > covered_to:
                holes.append(OffsetRange(key[0], key[1], covered_to, first - 1))
            covered_to = max(covered_to, last + 1)
        if covered_to < end:
            holes.append(OffsetRange(key[0], key[1], covered_to, end - 1))
    return holes


def lost_ranges(records: Iterable[LedgerRecord]) -> list[OffsetRange]:
    """The ranges reported lost to retention, once each."""
    found = {OffsetRange(r.topic, r.partition, r.first_offset, r.last_offset) for r in records if r.lost}
    return sorted(found, key=lambda r: (r.topic, r.partition, r.first))
