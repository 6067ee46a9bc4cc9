"""Each cohort's membership as MoEngage was told it, and what a change or a snapshot asks to send (pure).

The worker keeps this in a Faust table (a changelog on Kafka), one key per (cohort, member), so a restarted or
moved worker recovers it; here it is any mutable mapping of bytes. A member's value says whether MoEngage was
told it is in the cohort and as of what time (the change's ``computed_time`` or the snapshot's
``lastComputed``): a change older than what the state holds is stale and ignored, which makes a repeated or late
webhook delivery harmless and lets a later change always win. Members who left keep a small tombstone (so an
older "enter" cannot re-add them) until a snapshot newer than it proves them gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import asdict, dataclass, field

import orjson

from forwarder.cohorts.requests import Member

MEMBER_SEPARATOR = "\x1f"
META_SEPARATOR = "\x1e"
PRESENT = b"1"
ABSENT = b"0"

Store = MutableMapping[bytes, bytes]


def member_key(cohort_id: str, member: Member) -> bytes:
    return f"{cohort_id}{MEMBER_SEPARATOR}{member[0]}{MEMBER_SEPARATOR}{member[1]}".encode()


def member_of(key: bytes) -> Member:
    _, field_name, value = key.decode().split(MEMBER_SEPARATOR, 2)
    return field_name, value


def meta_key(cohort_id: str) -> bytes:
    return f"{cohort_id}{META_SEPARATOR}meta".encode()


def encode_value(present: bool, time_ms: int, tag: str = "") -> bytes:
    """``tag``: the snapshot that confirmed the member (empty for a webhook change)."""
    head = (PRESENT if present else ABSENT) + b":" + str(time_ms).encode()
    return head + b":" + tag.encode() if tag else head


def decode_value(value: bytes) -> tuple[bool, int]:
    flag, _, rest = value.partition(b":")
    time_ms, _, _ = rest.partition(b":")
    return flag == PRESENT, int(time_ms or 0)


def tag_of(value: bytes) -> str:
    return value.split(b":", 2)[2].decode() if value.count(b":") >= 2 else ""


def snapshot_tag(snapshot_id: str) -> str:
    """12 hex characters of the snapshot id: enough to tell a cohort's snapshots apart, small per member."""
    return snapshot_id[:12]


def member_keys(store: Store, cohort_id: str) -> Iterator[bytes]:
    """Every member key of one cohort (a scan: used once per snapshot, not per change)."""
    prefix = f"{cohort_id}{MEMBER_SEPARATOR}".encode()
    for key in list(store.keys()):
        if key.startswith(prefix):
            yield key


@dataclass
class CohortStatus:
    """What ``cohorts status`` prints and ``/metrics`` shows for one cohort."""

    cohort_id: str
    name: str = ""
    snapshot_members: int | None = None
    in_uid: int = 0
    in_anonymous: int = 0
    unmapped: int = 0
    pending: int = 0
    dead_lettered: int = 0
    stale_ignored: int = 0
    last_sync_ms: int = 0
    last_computed_ms: int = 0
    # ``unmapped`` counts the members with neither id of the last sync: the last snapshot, or the webhook batches
    # of the last computation (these message ids, so a batch delivered twice counts once).
    unmapped_of_ms: int = 0
    unmapped_messages: list[str] = field(default_factory=list)
    # The snapshot being applied and the parts of it seen so far (its removals need all of them).
    snapshot_id: str = ""
    snapshot_parts: list[int] = field(default_factory=list)

    def count_unmapped(self, time_ms: int, unmapped: int, message_id: str | None) -> None:
        if time_ms < self.unmapped_of_ms:
            return
        if time_ms > self.unmapped_of_ms:
            self.unmapped_of_ms, self.unmapped, self.unmapped_messages = time_ms, 0, []
        if message_id is None or message_id not in self.unmapped_messages:
            self.unmapped += unmapped
            if message_id is not None:
                self.unmapped_messages.append(message_id)

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, value: bytes) -> CohortStatus:
        data = orjson.loads(value)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def load_status(store: Store, cohort_id: str) -> CohortStatus:
    value = store.get(meta_key(cohort_id))
    return CohortStatus.decode(value) if value is not None else CohortStatus(cohort_id)


@dataclass
class Plan:
    """What to tell MoEngage, and what needs no request."""

    adds: list[Member] = field(default_factory=list)
    removes: list[Member] = field(default_factory=list)
    confirmed: list[Member] = field(default_factory=list)
    stale: int = 0
    unchanged: int = 0


def plan_change(store: Store, cohort_id: str, members: Iterable[Member], present: bool, time_ms: int) -> Plan:
    """A webhook change, applied as is: every member not already in the asked state, unless the state holds a
    later change for it. A removal is sent even for a member the state never saw (a lost state must not lose a
    removal; MoEngage ignores removing a non-member)."""
    plan = Plan()
    for member in dict.fromkeys(members):
        current = store.get(member_key(cohort_id, member))
        if _stale(current, time_ms, plan):
            continue
        if current is not None and decode_value(current)[0] == present:
            plan.unchanged += 1
            continue
        (plan.adds if present else plan.removes).append(member)
    return plan


def _stale(current: bytes | None, time_ms: int, plan: Plan) -> bool:
    """The state holds a later change for the member: this one is counted as stale and left."""
    if current is None or decode_value(current)[1] <= time_ms:
        return False
    plan.stale += 1
    return True


def plan_snapshot_part(store: Store, cohort_id: str, members: Iterable[Member], time_ms: int, tag: str) -> Plan:
    """One part of a snapshot: ``adds`` to send (members not in the state), and in ``confirmed`` the members
    already in it, to be marked as seen by this snapshot (no request). A member the state holds a later change
    for is left as it is."""
    plan = Plan()
    for member in members:
        current = store.get(member_key(cohort_id, member))
        if _stale(current, time_ms, plan):
            continue
        if current is not None and decode_value(current)[0]:
            if tag_of(current) == tag:
                plan.unchanged += 1
            else:
                plan.confirmed.append(member)
            continue
        plan.adds.append(member)
    return plan


def plan_snapshot_end(store: Store, cohort_id: str, time_ms: int, tag: str) -> tuple[Plan, list[bytes]]:
    """(removals: members in the state, not marked by the snapshot, not changed after it; tombstones it proves
    gone)."""
    plan = Plan()
    expired: list[bytes] = []
    for key in member_keys(store, cohort_id):
        value = store[key]
        was_present, was_ms = decode_value(value)
        if was_ms > time_ms:
            plan.stale += 1
        elif was_present:
            if tag_of(value) != tag:
                plan.removes.append(member_of(key))
        else:
            expired.append(key)
    return plan, expired


def record(
    store: Store, status: CohortStatus, members: Iterable[Member], present: bool, time_ms: int, tag: str = ""
) -> None:
    """After MoEngage answered 200 (or, for ``confirmed`` members, without a request): the members are (or are no
    longer) in the segment, as of ``time_ms``, confirmed by the snapshot ``tag``."""
    for member in members:
        key = member_key(status.cohort_id, member)
        current = store.get(key)
        was_present = current is not None and decode_value(current)[0]
        store[key] = encode_value(present, time_ms, tag)
        if was_present != present:
            step = 1 if present else -1
            if member[0] == "uid":
                status.in_uid += step
            else:
                status.in_anonymous += step
