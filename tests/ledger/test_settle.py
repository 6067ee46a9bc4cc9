"""The ledger counts every source offset once, whatever crashes and rebalances re-processed."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.ledger.records import LedgerRecord
from forwarder.ledger.settle import settle


def run(first: int, last: int, life: int = 0, source: str = "stream", partition: int = 0) -> LedgerRecord:
    """A run's record: offset ``o`` holds one event of code ``o<o>``, delivered in life ``life``."""
    record = LedgerRecord(source, "moengage-streams", partition, first, last)
    for offset in range(first, last + 1):
        record.outcomes.delivered(f"o{offset}", 1, hour=life)
    return record


def counted(records: list[LedgerRecord]) -> Counter[str]:
    total: Counter[str] = Counter()
    for record in settle(records):
        for (_, _, code, *_), n in record.outcomes.counts.items():
            total[code] += n
    return total


def test_a_run_re_processed_with_other_boundaries_is_counted_once() -> None:
    # The worker wrote 0-99 and 100-199, committed 100, died; the next life cut 100-149 and 150-260.
    records = [run(0, 99), run(100, 199), run(100, 149, 1), run(150, 260, 1)]
    kept = settle(records)
    assert [(r.first_offset, r.last_offset) for r in kept] == [(0, 99), (100, 149), (150, 260)]
    assert counted(records) == Counter({f"o{o}": 1 for o in range(261)})


def test_the_latest_outcome_wins_when_the_same_range_was_written_twice() -> None:
    records = [run(0, 9, life=0), run(0, 9, life=1)]
    (kept,) = settle(records)
    assert kept is records[1]


def test_a_late_record_of_a_worker_that_lost_its_partitions_does_not_count_twice() -> None:
    # The new owner wrote 100-260 before the old one, its POST still out, wrote 100-199.
    records = [run(0, 99), run(100, 260, 1), run(100, 199, 0)]
    assert counted(records) == Counter({f"o{o}": 1 for o in range(261)})


def test_sources_and_partitions_are_settled_apart() -> None:
    records = [run(0, 9), run(0, 9, source="replay"), run(0, 9, partition=1)]
    assert len(settle(records)) == 3


def test_overlap_that_no_chain_covers_exactly_is_kept_rather_than_lost() -> None:
    # Offset 5 missing from the later lives (a gap no run can start at): no exact chain.
    records = [run(0, 9), run(0, 4, 1), run(6, 9, 1)]
    total = counted(records)
    assert all(total[f"o{o}"] >= 1 for o in range(10))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_history_of_crashes_and_rebalances_settles_to_each_offset_once(data: st.DataObject) -> None:
    """A partition of ``end`` offsets read by worker lives that crash before or after writing a run's record,
    commit only now and then, and sometimes write a record late, after the next life began."""
    end = data.draw(st.integers(1, 80), label="offsets")
    written: list[LedgerRecord] = []
    committed = acked = 0
    late: LedgerRecord | None = None
    life = 0
    while committed < end:
        life += 1
        fate_options = ["ok", "crash_before_write", "crash_after_write", "late_write"] if life < 12 else ["ok"]
        position = committed
        while position < end:
            last = min(end - 1, position + data.draw(st.integers(0, 15), label="run size"))
            fate = data.draw(st.sampled_from(fate_options), label="fate")
            if fate == "crash_before_write":
                break
            record = run(position, last, life)
            if fate == "late_write":
                late = record  # written after the next life's first record
                break
            written.append(record)
            if late is not None:
                written.append(late)
                late = None
            if fate == "crash_after_write":
                break
            acked = last + 1
            if data.draw(st.booleans(), label="commit now"):
                committed = acked
            position = last + 1
        else:
            committed = acked  # a clean stop commits what it acked
        if late is not None and life >= 12:
            written.append(late)
            late = None
        # Whatever happened so far, nothing written is ever counted less than once.
        total = counted(written)
        assert all(total[f"o{o}"] >= 1 for r in written for o in range(r.first_offset, r.last_offset + 1))
    if late is not None:
        written.append(late)
    assert counted(written) == Counter({f"o{o}": 1 for o in range(end)})


def test_an_event_parked_twice_by_a_re_processed_run_counts_once_where_it_settled_last() -> None:
    # The stream run parked event src/0/150/3 twice (crash before commit): the retry agent settled it at retry
    # offsets 7 (dead-lettered) and 9 (delivered), in two records. Another event settled once at offset 8.
    first = LedgerRecord("retry", "src-retry", 0, 7, 8)
    first.settle(("dead_lettered", "invalid_field:x", "SMS_SENT", 5, "c", "default"), "src/0/150/3")
    first.settle(("delivered", "", "SMS_SENT", 5, "c", "default"), "src/1/20/0")
    second = LedgerRecord("retry", "src-retry", 0, 9, 9)
    second.settle(("delivered", "", "SMS_SENT", 5, "c", "default"), "src/0/150/3")
    settled = settle([LedgerRecord.decode(first.encode()), LedgerRecord.decode(second.encode())])
    total: Counter[str] = Counter()
    for record in settled:
        total.update(record.outcomes.by_outcome)
    assert total == {"delivered": 2}
    assert first.outcomes.read == 2  # the input is left as it was
