"""The cohort state: what a change or a snapshot asks to send, given what MoEngage was already told."""

from __future__ import annotations

from forwarder.cohorts.state import (
    CohortStatus,
    Store,
    decode_value,
    member_key,
    plan_change,
    plan_snapshot_end,
    plan_snapshot_part,
    record,
)


def uid(*names: str) -> list[tuple[str, str]]:
    return [("uid", n) for n in names]


def store_with(present: list[tuple[str, str]], time_ms: int, cohort: str = "c1") -> tuple[Store, CohortStatus]:
    store: Store = {}
    status = CohortStatus(cohort)
    record(store, status, present, True, time_ms)
    return store, status


def test_a_change_sends_only_members_whose_state_differs() -> None:
    store, _ = store_with(uid("a", "b"), 100)
    plan = plan_change(store, "c1", uid("a", "c"), True, 200)
    assert plan.adds == uid("c")
    assert plan.unchanged == 1
    plan = plan_change(store, "c1", uid("a", "z"), False, 200)
    # z was never sent, but a removal is sent anyway: a lost state must not lose a removal.
    assert plan.removes == uid("a", "z")


def test_a_later_change_wins_over_an_earlier_one_whatever_the_order_they_arrive_in() -> None:
    store, status = store_with(uid("a"), 100)
    leave = plan_change(store, "c1", uid("a"), False, 300)
    record(store, status, leave.removes, False, 300)
    late_enter = plan_change(store, "c1", uid("a"), True, 200)  # computed before the leave, delivered after it
    assert late_enter.adds == []
    assert late_enter.stale == 1
    assert decode_value(store[member_key("c1", ("uid", "a"))]) == (False, 300)


def test_the_same_delivery_twice_sends_nothing_the_second_time() -> None:
    store: Store = {}
    status = CohortStatus("c1")
    first = plan_change(store, "c1", uid("a", "b"), True, 100)
    record(store, status, first.adds, True, 100)
    again = plan_change(store, "c1", uid("a", "b"), True, 100)
    assert again.adds == []
    assert again.unchanged == 2
    assert status.in_uid == 2


def test_a_snapshot_adds_the_new_removes_the_gone_and_keeps_later_changes() -> None:
    store, status = store_with(uid("stay", "gone"), 100)
    record(store, status, uid("left-after"), False, 900)  # a webhook after the snapshot took it out
    record(store, status, uid("joined-after"), True, 900)  # ... and put this one in
    part = plan_snapshot_part(store, "c1", uid("stay", "new", "left-after"), 500, "s1")
    assert part.adds == uid("new")
    assert part.confirmed == uid("stay")
    assert part.stale == 1
    record(store, status, part.confirmed + part.adds, True, 500, "s1")
    again = plan_snapshot_part(store, "c1", uid("stay", "new"), 500, "s1")  # the same part handed over again
    assert (again.adds, again.confirmed, again.unchanged) == ([], [], 2)
    end, expired = plan_snapshot_end(store, "c1", 500, "s1")
    assert end.removes == uid("gone")
    assert end.stale == 2  # joined-after and left-after changed after the snapshot: left as they are
    assert expired == []


def test_a_snapshot_clears_tombstones_it_proves_gone() -> None:
    store, status = store_with(uid("a"), 100)
    record(store, status, uid("a"), False, 200)
    end, expired = plan_snapshot_end(store, "c1", 500, "s1")
    assert end.removes == []
    assert expired == [member_key("c1", ("uid", "a"))]


def test_cohorts_do_not_see_each_other() -> None:
    store, _ = store_with(uid("a"), 100, cohort="c1")
    end, _ = plan_snapshot_end(store, "c2", 500, "s1")
    assert end.removes == []


def test_status_counts_members_by_identity() -> None:
    store: Store = {}
    status = CohortStatus("c1")
    record(store, status, [("uid", "a"), ("moe_anonymous_id", "x")], True, 1)
    record(store, status, [("uid", "a")], True, 2)
    assert (status.in_uid, status.in_anonymous) == (1, 1)
    record(store, status, [("moe_anonymous_id", "x")], False, 3)
    assert (status.in_uid, status.in_anonymous) == (1, 0)
    assert CohortStatus.decode(status.encode()) == status
