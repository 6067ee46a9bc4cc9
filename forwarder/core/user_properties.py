"""``FORWARDER_USER_PROPERTIES``: the MoEngage user attributes sent as Amplitude user properties, on the event
itself (``"user_properties": {"$set": {...}, "$setOnce": {...}}``), so no extra request.

Which values actually go is decided later, per user, by ``PropertyMemory``: Amplitude caps user-property updates
at 1,800 per user per hour, and a campaign's burst (Sent, Delivered, Opened, Clicked in seconds) must not spend
four of them on one unchanged value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Operation = Literal["$set", "$setOnce"]
SUFFIXES: dict[str, Operation] = {"set": "$set", "setonce": "$setOnce"}
UserProperties = dict[str, dict[str, Any]]


def _empty(value: Any) -> bool:
    return value is None or (type(value) is str and not value.strip()) or value == [] or value == {}


@dataclass(frozen=True, slots=True)
class UserPropertyRules:
    names: tuple[tuple[str, Operation], ...]
    # replay, replay-dlq and backfill: an old event must never overwrite a newer value.
    set_once_only: bool = False

    @classmethod
    def parse(cls, text: str) -> UserPropertyRules | None:
        """``plan,city,first_seen:setOnce``; None when empty. ValueError names the bad entry."""
        names: list[tuple[str, Operation]] = []
        seen: set[str] = set()
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            name, sep, suffix = entry.partition(":")
            name = name.strip()
            operation = SUFFIXES.get(suffix.strip().lower()) if sep else "$set"
            if not name or operation is None:
                raise ValueError(f"{entry!r} is not name or name:set or name:setOnce")
            if name in seen:
                raise ValueError(f"{name!r} is named twice")
            seen.add(name)
            names.append((name, operation))
        return cls(tuple(names)) if names else None

    def for_replays(self) -> UserPropertyRules:
        return UserPropertyRules(self.names, set_once_only=True)

    def extract(self, event: dict[str, Any]) -> UserProperties:
        """The configured attributes the event has: from ``user_attributes``, else its top level; null and empty
        values left out, values keep their JSON type, names unchanged."""
        attributes = event.get("user_attributes")
        if type(attributes) is not dict:
            attributes = {}
        found: UserProperties = {}
        for name, operation in self.names:
            value = attributes.get(name)
            if value is None:
                value = event.get(name)
            if _empty(value):
                continue
            found.setdefault("$setOnce" if self.set_once_only else operation, {})[name] = value
        return found
