"""Which user-property values a user's next event still needs to carry.

A value goes when it differs from the last one this worker sent for that user (in an event still out, or one
Amplitude accepted). When an event carrying a value is not accepted (dead-lettered, parked on the retry topic, or
its run failed), the value is forgotten, so the user's next event carries it again. Bounded: the least recently
seen users are forgotten first, and a forgotten user's values are simply sent again.

Pure (no I/O), but it has state: one per worker, replay or transform run.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import orjson

from forwarder.core.outcomes import Forwarded
from forwarder.core.user_properties import UserProperties


class Ticket(NamedTuple):
    """What one event carries, to settle once Amplitude has answered for it."""

    user: str
    serial: int
    names: tuple[str, ...]


def _fingerprint(value: Any) -> Any:
    """Equal only for the same JSON value: ``1``, ``1.0`` and ``true`` differ (Python's == says they are equal)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool:
        return kind, value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def _user_of(forwarded: Forwarded) -> str:
    event = forwarded.event
    user_id = event.get("user_id")
    return f"u:{user_id}" if user_id is not None else f"d:{event.get('device_id')}"


class PropertyMemory:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # user -> property name -> (the value's fingerprint, serial of the latest event carrying it)
        self._users: OrderedDict[str, dict[str, tuple[Any, int]]] = OrderedDict()
        self._serial = 0

    def __len__(self) -> int:
        return len(self._users)

    def offer(self, forwarded: Forwarded) -> Ticket | None:
        """Leaves on the event only the values that changed for its user (re-encoding it when some go), and
        remembers them as sent; the ticket settles them (None: the event carries none)."""
        offered = forwarded.event.get("user_properties")
        if not offered:
            return None
        user = _user_of(forwarded)
        entries = self._users.get(user)
        if entries is None:
            entries = self._users[user] = {}
            if len(self._users) > self.capacity:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(user)
        self._serial += 1
        serial = self._serial
        kept: UserProperties = {}
        carried: list[str] = []
        for operation, values in offered.items():
            for name, value in values.items():
                fingerprint = _fingerprint(value)
                entry = entries.get(name)
                if entry is not None and entry[0] == fingerprint:
                    continue
                entries[name] = (fingerprint, serial)
                kept.setdefault(operation, {})[name] = value
                carried.append(name)
        if len(carried) != sum(len(values) for values in offered.values()):
            if kept:
                forwarded.event["user_properties"] = kept
            else:
                del forwarded.event["user_properties"]
            forwarded.encoded = orjson.dumps(forwarded.event)
        return Ticket(user, serial, tuple(carried)) if carried else None

    def settle(self, ticket: Ticket, accepted: bool) -> None:
        """An event not accepted: its values are forgotten, unless a later event carries them since."""
        if accepted:
            return
        entries = self._users.get(ticket.user)
        if entries is None:
            return
        for name in ticket.names:
            entry = entries.get(name)
            if entry is not None and entry[1] == ticket.serial:
                del entries[name]
