"""``FORWARDER_PII``: what happens to personal data before it leaves for Amplitude (drop it, or send a salted hash).

Regulated teams cannot send an email address or a phone number in clear; the guide sends them. The default changes
nothing. A hash is SHA-256 over the salt followed by the value as text (an email trimmed and lower-cased first, as
other tools hash them, so the same address hashes alike everywhere); a value that is not a string hashes its JSON
text (``15551234567``, ``true``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Action = Literal["drop", "sha256"]
ACTIONS: tuple[Action, ...] = ("drop", "sha256")
# (property, action): what a forwarded event had done to it, for the counts.
Applied = tuple[tuple[str, str], ...]


def is_email_property(name: str) -> bool:
    return "email" in name.lower()


def hashed(value: Any, salt: str, email: bool) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    if email:
        text = text.strip().lower()
    return hashlib.sha256((salt + text).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class PiiRules:
    actions: Mapping[str, Action]
    salt: str = field(default="", repr=False)

    @classmethod
    def parse(cls, text: str, salt: str = "") -> PiiRules | None:
        """``moe_email_id:sha256,moe_mobile_number:drop``; None when empty. ValueError names the bad entry (a
        property name, never a value)."""
        actions: dict[str, Action] = {}
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            name, sep, action = (piece.strip() for piece in entry.rpartition(":"))
            if not sep or not name:
                raise ValueError(f"{entry!r} is not property:action (action drop or sha256)")
            if action not in ACTIONS:
                raise ValueError(f"{entry!r}: the action must be drop or sha256")
            if name in actions:
                raise ValueError(f"{name!r} is named twice")
            actions[name] = action
        return cls(actions, salt) if actions else None

    def apply(self, properties: dict[str, Any], applied: list[tuple[str, str]]) -> None:
        """In place: each named property present is dropped or replaced by its hash, and noted in ``applied``."""
        for name, action in self.actions.items():
            if name not in properties:
                continue
            if action == "drop":
                del properties[name]
            else:
                properties[name] = hashed(properties[name], self.salt, is_email_property(name))
            applied.append((name, action))
