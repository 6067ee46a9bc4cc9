"""The cohort syncer against the local MoEngage service: snapshots diffed, webhook changes applied, refusals
dead-lettered, and the references it releases for acknowledgement."""

from __future__ import annotations

import httpx
import orjson
from pydantic import SecretStr

from devkit.moengage import MoEngageService
from forwarder.cohorts.members import parse_webhook
from forwarder.cohorts.moengage import MoEngageClient
from forwarder.cohorts.records import SnapshotPart, WebhookChange
from forwarder.cohorts.state import Store
from forwarder.cohorts.sync import CohortSyncer
from forwarder.kafka.dead_letters import DeadLetterRecord, SourceRef


class DeadLetters:
    def __init__(self) -> None:
        self.records: list[DeadLetterRecord] = []

    async def write(self, records: list[DeadLetterRecord]) -> None:
        self.records += records


async def _no_sleep(seconds: float) -> None:
    return None


def setup(known: set[str]) -> tuple[MoEngageService, CohortSyncer, Store, DeadLetters]:
    service = MoEngageService("ws-1", "key-1", requests_per_minute=100_000)
    service.known |= {("uid", u) for u in known}
    client = MoEngageClient(
        "http://moengage.local",
        "ws-1",
        SecretStr("key-1"),
        max_requests_per_minute=100_000,
        sleep=_no_sleep,
        transport=httpx.ASGITransport(app=service.app),
    )
    store: Store = {}
    dead = DeadLetters()
    return service, CohortSyncer(store, client, dead), store, dead


def ref(offset: int) -> SourceRef:
    return SourceRef("cohorts", 0, offset, b"c1")


def parts(snapshot_id: str, members: list[str], per_part: int, computed_ms: int) -> list[SnapshotPart]:
    chunks = [members[i : i + per_part] for i in range(0, len(members), per_part)] or [[]]
    return [
        SnapshotPart(
            "c1",
            "Buyers: EU",
            snapshot_id,
            computed_ms,
            index,
            index == len(chunks) - 1,
            [("uid", m) for m in chunk],
            total=len(members) if index == len(chunks) - 1 else 0,
        )
        for index, chunk in enumerate(chunks)
    ]


def webhook(users: list[str], in_cohort: bool, computed: str, message_id: str = "m") -> WebhookChange:
    body = orjson.dumps(
        {
            "cohort_id": "c1",
            "cohort_name": "Buyers: EU",
            "in_cohort": in_cohort,
            "computed_time": computed,
            "message_id": message_id,
            "users": [{"user_id": u} for u in users],
        }
    )
    change = parse_webhook(body)
    return WebhookChange(change, int(computed))


async def feed(syncer: CohortSyncer, records: list[SnapshotPart], first_offset: int = 0) -> list[list[int]]:
    released = []
    for offset, record in enumerate(records, start=first_offset):
        released.append([r.offset for r in await syncer.handle(record, ref(offset))])
    return released


def segment(service: MoEngageService) -> set[str]:
    return {value for _, value in service.segments["c1"].members}


async def test_snapshots_keep_the_segment_equal_to_members_moengage_knows() -> None:
    users = [f"user-{i:05d}" for i in range(5000)]
    known = set(users[:4500]) | {f"joined-{i}" for i in range(150)}
    service, syncer, _, dead = setup(known)
    released = await feed(syncer, parts("s1", users, 2000, 1000))
    assert released == [[0], [1], [2]]  # each part once its work is done: acknowledgements stay in order
    assert segment(service) == set(users) & known
    assert service.segments["c1"].name == "[Amplitude] Buyers EU"  # ':' is refused by MoEngage

    second = users[300:] + [f"joined-{i}" for i in range(200)]
    sent_before = service.members_sent
    await feed(syncer, parts("s2", second, 2000, 2000), first_offset=3)
    assert segment(service) == set(second) & known
    assert service.members_sent - sent_before == 300 + 200  # only the difference went out
    status = syncer.statuses["c1"]
    assert status.snapshot_members == len(second)
    assert status.in_uid == len(second)  # what MoEngage was told (it keeps the known ones)
    assert status.pending == 0
    assert dead.records == []


async def test_a_worker_that_dies_mid_snapshot_goes_on_from_the_next_part_and_still_removes() -> None:
    users = [f"u{i}" for i in range(100)]
    service, syncer, store, _ = setup(set(users))
    await feed(syncer, parts("s1", users, 40, 1000))
    second = parts("s2", users[10:], 40, 2000)
    await feed(syncer, second[:2])  # then the worker dies; those two parts were acknowledged
    restarted = CohortSyncer(store, syncer._sender, DeadLetters())  # the state, as recovered from the changelog
    sent_before = service.members_sent
    await feed(restarted, [second[1], *second[2:]], first_offset=11)  # the last part done is handed over again
    assert service.members_sent - sent_before == 10  # the removals only
    assert segment(service) == set(users[10:])


async def test_webhook_changes_apply_as_is_and_a_repeated_delivery_changes_nothing() -> None:
    service, syncer, _, _ = setup({"a", "b", "c"})
    await syncer.handle(webhook(["a", "b"], True, "1000", "x::enter::0"), ref(0))
    await syncer.handle(webhook(["b"], False, "2000", "y::exit::0"), ref(1))
    requests_before = sum(service.responses.values())
    # Amplitude retries the first delivery after the second was applied: b must stay out
    released = await syncer.handle(webhook(["a", "b"], True, "1000", "x::enter::0"), ref(2))
    assert released == [ref(2)]
    assert sum(service.responses.values()) == requests_before  # nothing was sent
    assert segment(service) == {"a"}
    assert syncer.statuses["c1"].stale_ignored == 1


async def test_a_refused_body_is_dead_lettered_with_the_answer_and_stays_out_of_the_state() -> None:
    service, syncer, _store, dead = setup({"a"})
    service.faults.error_rates = {400: 1.0}
    await syncer.handle(webhook(["a"], True, "1000"), ref(0))
    assert [(d.reason, d.status) for d in dead.records] == [("moengage_400", 400)]
    assert '"status":"fail"' in dead.records[0].response_excerpt
    assert orjson.loads(dead.records[0].value)["parameters"]["members"] == [{"uid": "a"}]
    assert syncer.statuses["c1"].dead_lettered == 1
    service.faults.error_rates = {}
    await syncer.handle(webhook(["a"], True, "1000"), ref(1))  # not in the state: sent again
    assert segment(service) == {"a"}


async def test_an_unfinished_snapshot_removes_nothing_and_the_next_one_does() -> None:
    users = [f"u{i}" for i in range(10)]
    service, syncer, _, _ = setup(set(users))
    await feed(syncer, parts("s1", users, 5, 1000)[:1])  # its pull died after the first part
    await feed(syncer, parts("s2", users[:3], 5, 2000), first_offset=1)
    assert segment(service) == set(users[:3])


async def test_a_first_part_handed_over_again_changes_nothing_and_the_snapshot_still_removes() -> None:
    users = [f"u{i}" for i in range(30)]
    service, syncer, _, _ = setup(set(users))
    await feed(syncer, parts("s1", users, 10, 1000))
    second = parts("s2", users[5:], 10, 2000)
    # faust re-seeks to the committed offset (before the snapshot) and hands its first part over again
    sent_before = service.members_sent
    await feed(syncer, [second[0], second[0], *second[1:]], first_offset=3)
    assert segment(service) == set(users[5:])
    assert service.members_sent - sent_before == 5


async def test_a_gap_in_the_parts_adds_but_removes_nothing() -> None:
    users = [f"u{i}" for i in range(30)]
    service, syncer, _, _ = setup(set(users))
    await feed(syncer, parts("s1", users, 10, 1000))
    second = parts("s2", [*users[5:], "u-new"], 10, 2000)
    await feed(syncer, [second[0], second[2]], first_offset=3)
    assert segment(service) == set(users)  # nobody removed on an incomplete read
