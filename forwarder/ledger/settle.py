"""Which ledger records count: every source offset once, however often its run was re-processed.

A run is re-processed when a worker dies (or loses its partitions) after writing the run's record but before its
offsets were committed: the next owner starts again at the committed offset, which is always the end of an
earlier run, and cuts its runs anew. So the records of one stream (source, topic, partition) overlap, but the
runs of each worker life follow each other without gaps. ``settle`` keeps, for each stretch of offsets the
records cover, a chain of records that follow each other exactly (each starts one past the previous one's end)
and cover the stretch once, preferring at every step the record written last (the latest outcome of those
events). Written last is not enough on its own: a worker that lost its partitions while its POST was out may
write its record after the new owner wrote a longer one.

A stretch no chain covers exactly (offsets missing inside it: a compacted or transactional source) falls back
to dropping the records that later ones cover: then overlap is counted twice rather than lost.

The retry topic adds one more way to count twice: a run re-processed after a crash parks its throttled events
again, so the retry agent settles them twice, at different retry offsets. Its records name each event's first
source (``origins``); of two settlements of one event the later one counts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from forwarder.core.counting import Key
from forwarder.ledger.records import LedgerRecord


def settle(records: Sequence[LedgerRecord]) -> list[LedgerRecord]:
    """``records`` in the order they were written; returns those that count, in the same order."""
    order = {id(record): position for position, record in enumerate(records)}
    by_stream: dict[tuple[str, str, int], list[LedgerRecord]] = defaultdict(list)
    for record in records:
        by_stream[record.stream].append(record)
    kept: list[LedgerRecord] = []
    for group in by_stream.values():
        for stretch in _stretches(group):
            chain = _chain(stretch, order)
            kept.extend(chain if chain is not None else _not_covered_later(stretch, order))
    kept.sort(key=lambda record: order[id(record)])
    return _once_per_origin(kept)


def _once_per_origin(kept: list[LedgerRecord]) -> list[LedgerRecord]:
    seen: set[str] = set()
    result = list(kept)
    for position in range(len(result) - 1, -1, -1):
        record = result[position]
        if not record.origins:
            continue
        repeated = []
        for origin, key in reversed(record.origins):
            if origin in seen:
                repeated.append(key)
            seen.add(origin)
        if repeated:
            result[position] = _without(record, repeated)
    return result


def _without(record: LedgerRecord, keys: list[Key]) -> LedgerRecord:
    """A copy of ``record`` with one event less under each of ``keys`` (settled again later)."""
    copy = LedgerRecord(
        record.source,
        record.topic,
        record.partition,
        record.first_offset,
        record.last_offset,
        deferred=record.deferred,
        event_types=dict(record.event_types),
        written_at_ms=record.written_at_ms,
    )
    copy.outcomes.add(record.outcomes)
    for key in keys:
        copy.outcomes.add_key(key, -1)
    copy.outcomes.counts += Counter()  # drop the keys that fell to zero
    return copy


def _stretches(group: list[LedgerRecord]) -> list[list[LedgerRecord]]:
    """Records whose ranges overlap or touch, as separate groups."""
    stretches: list[list[LedgerRecord]] = []
    end = -2
    for record in sorted(group, key=lambda r: (r.first_offset, r.last_offset)):
        if record.first_offset > end + 1:
            stretches.append([])
        stretches[-1].append(record)
        end = max(end, record.last_offset)
    return stretches


def _chain(stretch: list[LedgerRecord], order: dict[int, int]) -> list[LedgerRecord] | None:
    start = min(r.first_offset for r in stretch)
    end = max(r.last_offset for r in stretch)
    starting: dict[int, list[LedgerRecord]] = defaultdict(list)
    for record in stretch:
        starting[record.first_offset].append(record)
    # Which offsets a chain can start at and still end exactly at ``end``: from the end backwards.
    reaches_end: dict[int, bool] = {end + 1: True}
    for first in sorted(starting, reverse=True):
        reaches_end[first] = any(reaches_end.get(r.last_offset + 1, False) for r in starting[first])
    if not reaches_end.get(start, False):
        return None
    chain: list[LedgerRecord] = []
    position = start
    while position <= end:
        choices = [r for r in starting[position] if reaches_end.get(r.last_offset + 1, False)]
        chosen = max(choices, key=lambda r: order[id(r)])
        chain.append(chosen)
        position = chosen.last_offset + 1
    return chain


def _not_covered_later(stretch: list[LedgerRecord], order: dict[int, int]) -> list[LedgerRecord]:
    kept: list[LedgerRecord] = []
    covered: list[tuple[int, int]] = []  # disjoint, merged ranges of the records written after this one
    for record in sorted(stretch, key=lambda r: order[id(r)], reverse=True):
        if not any(a <= record.first_offset and record.last_offset <= b for a, b in covered):
            kept.append(record)
        covered = _merged([*covered, (record.first_offset, record.last_offset)])
    return kept


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
