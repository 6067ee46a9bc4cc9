"""MoEngage ``uid`` -> Amplitude ``user_id``; ``moe_anonymous_id`` -> ``device_id`` (mapping.md, Identity)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from forwarder.core.outcomes import EventWarning

# Amplitude's default minimum id length (HTTP V2 docs); below it, options.min_id_length must say so.
AMPLITUDE_DEFAULT_MIN_ID_LENGTH = 5

# Values Amplitude rejects as ids (its documented invalid-id list), compared case-insensitively.
PLACEHOLDER_IDS = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "",
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }
)


@dataclass(slots=True)  # not frozen: built for every event, and frozen __init__ costs a setattr per field
class Identity:
    user_id: str | None
    device_id: str | None
    # Set when no id is usable: "unidentifiable" (no id at all) or "id_too_short" (ids present, too short).
    drop_reason: str | None
    warnings: tuple[EventWarning, ...] = ()


def clean_id(value: Any) -> str | None:
    """An id as Amplitude would accept it, or None when absent or a placeholder. Length is checked apart."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    return None if text.casefold() in PLACEHOLDER_IDS else text


# The longest placeholder; a longer string cannot be one, so it skips the casefold.
_LONGEST_PLACEHOLDER = max(len(p) for p in PLACEHOLDER_IDS)


def _usable(value: Any) -> str | None:
    """``clean_id`` with a fast path for the common case, a plain string."""
    if type(value) is str:
        text = value.strip()
        if len(text) > _LONGEST_PLACEHOLDER or text.casefold() not in PLACEHOLDER_IDS:
            return text
        return None
    return clean_id(value)


def raw_anonymous_id(event: dict[str, Any]) -> Any:
    """``user_attributes.moe_anonymous_id``, or the top-level one (some feeds put it there) when the first is
    not a usable id. The one reading of the anonymous id: identity, partition keys and insert ids all use it."""
    user_attributes = event.get("user_attributes")
    nested = user_attributes.get("moe_anonymous_id") if type(user_attributes) is dict else None
    if _usable(nested) is not None:
        return nested
    top = event.get("moe_anonymous_id")
    return top if top is not None else nested


def raw_moengage_user_id(event: dict[str, Any]) -> Any:
    user_attributes = event.get("user_attributes")
    return user_attributes.get("moengage_user_id") if type(user_attributes) is dict else None


def identify(event: dict[str, Any], min_id_length: int) -> Identity:
    raw_uid = event.get("uid")
    raw_anon = raw_anonymous_id(event)
    user_id = _usable(raw_uid)
    device_id = _usable(raw_anon)
    if (
        user_id is not None
        and device_id is not None
        and len(user_id) >= min_id_length
        and len(device_id) >= min_id_length
    ):
        return Identity(user_id, device_id, None)

    warnings: list[EventWarning] = []
    too_short = False
    checked: list[str | None] = []
    for name, raw, cleaned in (("user_id", raw_uid, user_id), ("device_id", raw_anon, device_id)):
        if isinstance(raw, list | dict):
            warnings.append(
                EventWarning("id_not_scalar", f"{name}: source value is a {type(raw).__name__}, not an id; left out")
            )
        if cleaned is not None and len(cleaned) < min_id_length:
            warnings.append(
                EventWarning(
                    "id_too_short", f"{name}: {len(cleaned)} characters is below the minimum {min_id_length}; left out"
                )
            )
            too_short = True
            cleaned = None
        checked.append(cleaned)
    user_id, device_id = checked
    if user_id is None and device_id is None:
        return Identity(None, None, "id_too_short" if too_short else "unidentifiable", tuple(warnings))
    return Identity(user_id, device_id, None, tuple(warnings))
