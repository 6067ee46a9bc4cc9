"""Offsets of the live topics that no ledger record covers below the group's commit: never processed."""

from __future__ import annotations

from forwarder.kafka.order import OffsetRange
from forwarder.ledger.holes import find_holes, lost_ranges
from forwarder.ledger.records import LedgerRecord


def record(first: int, last: int, source: str = "stream", topic: str = "src", partition: int = 0) -> LedgerRecord:
    return LedgerRecord(source, topic, partition, first, last)


def test_a_range_no_record_covers_below_the_commit_is_a_hole() -> None:
    records = [record(0, 9), record(15, 30)]
    assert find_holes(records, {("src", 0): 31}, {"src"}) == [OffsetRange("src", 0, 10, 14)]


def test_overlapping_re_processed_runs_cover_without_a_hole() -> None:
    records = [record(0, 9), record(5, 20), record(10, 14), record(21, 30)]
    assert find_holes(records, {("src", 0): 31}, {"src"}) == []


def test_the_commit_past_the_last_record_is_a_hole_up_to_the_commit() -> None:
    assert find_holes([record(0, 9)], {("src", 0): 12}, {"src"}) == [OffsetRange("src", 0, 10, 11)]


def test_what_lies_past_the_commit_or_before_the_first_record_is_not_a_hole() -> None:
    # The ledger's own retention dropped the records before 100; offsets past the commit are still being worked on.
    records = [record(100, 109), record(120, 130)]
    assert find_holes(records, {("src", 0): 110}, {"src"}) == []


def test_re_sends_other_topics_and_uncommitted_partitions_are_not_checked() -> None:
    records = [record(0, 9, source="replay"), record(0, 4, topic="other"), record(0, 4, partition=1)]
    records.append(record(20, 29, source="replay"))
    assert find_holes(records, {("src", 0): 30, ("other", 0): 10}, {"src"}) == []


def test_a_range_lost_to_retention_is_covered_and_listed_apart() -> None:
    lost = LedgerRecord("stream", "src", 0, 10, 14, lost=True)
    records = [record(0, 9), lost, record(15, 30)]
    assert find_holes(records, {("src", 0): 31}, {"src"}) == []
    assert lost_ranges(records) == [OffsetRange("src", 0, 10, 14)]
    assert LedgerRecord.decode(lost.encode()).lost
    assert not LedgerRecord.decode(record(0, 1).encode()).lost


def test_the_retry_topic_is_checked_like_the_source() -> None:
    records = [record(0, 3, source="retry", topic="retry"), record(6, 9, source="retry", topic="retry")]
    assert find_holes(records, {("retry", 0): 10}, {"src", "retry"}) == [OffsetRange("retry", 0, 4, 5)]
