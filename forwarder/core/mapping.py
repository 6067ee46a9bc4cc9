"""One identified MoEngage event -> one Amplitude event (shared/spec/mapping.md, Fields)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from forwarder.core.identify import Identity, raw_anonymous_id, raw_moengage_user_id
from forwarder.core.outcomes import EventWarning
from forwarder.core.pii import PiiRules
from forwarder.core.user_properties import UserPropertyRules
from schemas.amplitude import AmplitudeEvent

# Amplitude caps every string value at 1024 characters.
MAX_STRING_LENGTH = 1024
SOURCE = "MOENGAGE"

# Channel identifiers: the canonical property, then where MoEngage feeds put the value (first found wins).
# The top level is Streams' place; event_attributes is another partner feed's.
CHANNEL_IDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("moe_email_id", "email_id", ("moe_email_id", "email_id")),
    ("moe_push_id", "push_id", ("moe_push_id",)),
    ("moe_mobile_number", "mobile_number", ("moe_mobile_number",)),
)
# event_attributes keys consumed by CHANNEL_IDS, so they are not passed through a second time.
_CONSUMED_ATTRIBUTES = frozenset(key for _, _, keys in CHANNEL_IDS for key in keys)
# Campaign, flow, variation and locale fields: in event_attributes, or at the event's top level in flat callbacks
# (mapping.md; event_attributes wins when both have the key).
TOP_LEVEL_FIELDS = (
    "campaign_id",
    "campaign_name",
    "campaign_type",
    "campaign_channel",
    "parent_flow_id",
    "parent_flow_name",
    "variation_id",
    "locale_id",
    "locale_name",
)


def raw_campaign_id(event: dict[str, Any]) -> Any:
    """The campaign id as sent: in event_attributes, else at the top level (flat callbacks)."""
    attributes = event.get("event_attributes")
    campaign_id = attributes.get("campaign_id") if type(attributes) is dict else None
    return event.get("campaign_id") if campaign_id is None else campaign_id


def insert_id(event: dict[str, Any], code: str) -> str:
    """``event_uuid``, else a hash of what identifies the event, so a replay yields the same id."""
    uuid = event.get("event_uuid")
    if type(uuid) is str:
        uuid = uuid.strip()
        if uuid:
            return uuid
    elif type(uuid) is int:
        return str(uuid)
    key = orjson.dumps(
        [code, event.get("uid"), raw_anonymous_id(event), event.get("event_time"), raw_campaign_id(event)],
        option=orjson.OPT_NON_STR_KEYS,
        default=str,
    )
    return "moe-" + hashlib.sha256(key).hexdigest()[:40]


def _cut(value: Any, path: str, warnings: list[EventWarning]) -> Any:
    kind = type(value)
    if kind is not str and kind is not dict and kind is not list:
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            warnings.append(EventWarning("cut_string", f"{path}: {len(value)} characters cut to {MAX_STRING_LENGTH}"))
            return value[:MAX_STRING_LENGTH]
        return value
    if isinstance(value, dict):
        return {k: _cut(v, f"{path}.{k}", warnings) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v, f"{path}[{i}]", warnings) for i, v in enumerate(value)]
    return value


def _short(value: Any, path: str, warnings: list[EventWarning]) -> Any:
    """``_cut`` with the common case, a short string, decided without a call."""
    if type(value) is str and len(value) <= MAX_STRING_LENGTH:
        return value
    return _cut(value, path, warnings)


def event_properties(event: dict[str, Any], code: str, warnings: list[EventWarning]) -> dict[str, Any]:
    # The hot path: one pass over event_attributes, long strings cut as they pass (a second pass over every
    # property cost more than the rest of the mapping).
    attributes = event.get("event_attributes")
    if type(attributes) is not dict:
        attributes = {}

    props: dict[str, Any] = {}
    # Every event_attributes key passes through unchanged (campaign_*, parent_flow_*, variation_id,
    # locale_*, custom attributes); values vary in case across accounts and are never switched on.
    consumed = False
    for key, value in attributes.items():
        if value is None:
            continue
        if key in _CONSUMED_ATTRIBUTES:
            consumed = True  # a channel id: the loop below files it under its canonical name
            continue
        kind = type(value)
        if kind is str:
            if len(value) > MAX_STRING_LENGTH:
                value = _cut(value, f"event_properties.{key}", warnings)
        elif kind is dict or kind is list:
            value = _cut(value, f"event_properties.{key}", warnings)
        props[key] = value
    for key in TOP_LEVEL_FIELDS:
        if key not in props:
            value = event.get(key)
            if value is not None:
                props[key] = _short(value, f"event_properties.{key}", warnings)
    for prop, top_level, attribute_keys in CHANNEL_IDS:
        value = event.get(top_level)
        if value is None and consumed:
            for attribute_key in attribute_keys:
                value = attributes.get(attribute_key)
                if value is not None:
                    break
        if value is not None:
            props[prop] = _short(value, f"event_properties.{prop}", warnings)
    # The fixed keys last, so an event attribute of the same name cannot override them.
    props["$source"] = SOURCE
    props["event_code"] = _short(code, "event_properties.event_code", warnings)
    uid = event.get("uid")
    if uid is not None:
        props["UID"] = _short(uid, "event_properties.UID", warnings)
    moengage_user_id = raw_moengage_user_id(event)
    if moengage_user_id is not None:
        props["moengage_user_id"] = _short(moengage_user_id, "event_properties.moengage_user_id", warnings)
    return props


# Before 2000, or more than a day ahead of the clock: most likely a unit or clock error at the source.
EARLIEST_PLAUSIBLE_MS = 946_684_800_000
FUTURE_SLACK_MS = 86_400_000


def to_amplitude(
    event: dict[str, Any], code: str, event_type: str, time_ms: int, identity: Identity, catalogue_event: bool
) -> tuple[AmplitudeEvent, tuple[EventWarning, ...]]:
    warnings = list(identity.warnings)
    props = event_properties(event, code, warnings)
    out: AmplitudeEvent = {
        "event_type": event_type[:MAX_STRING_LENGTH],
        "time": time_ms,
        "insert_id": insert_id(event, code)[:MAX_STRING_LENGTH],
        "event_properties": props,
    }
    if catalogue_event and "campaign_id" not in props:
        warnings.append(EventWarning("missing_campaign_id", "a campaign event without campaign_id"))
    if time_ms < EARLIEST_PLAUSIBLE_MS or time_ms > time.time() * 1000 + FUTURE_SLACK_MS:
        warnings.append(EventWarning("implausible_time", f"time {time_ms} ms is before 2000 or over a day ahead"))
    if identity.user_id is not None:
        out["user_id"] = identity.user_id
    if identity.device_id is not None:
        out["device_id"] = identity.device_id
    return out, tuple(warnings)


def add_personal_data(
    out: AmplitudeEvent,
    event: dict[str, Any],
    user_properties: UserPropertyRules | None,
    pii: PiiRules | None,
    warnings: list[EventWarning],
) -> tuple[tuple[str, str], ...]:
    """The configured user attributes as user properties, then the PII rules over event and user properties alike
    (a value is hashed before it is cut). Returns the (property, action) pairs the PII rules applied."""
    found = user_properties.extract(event) if user_properties is not None else {}
    applied: list[tuple[str, str]] = []
    if pii is not None:
        pii.apply(out["event_properties"], applied)
        for values in found.values():
            pii.apply(values, applied)
    kept = {
        operation: {name: _short(value, f"user_properties.{name}", warnings) for name, value in values.items()}
        for operation, values in found.items()
        if values
    }
    if kept:
        out["user_properties"] = kept
    return tuple(applied)
