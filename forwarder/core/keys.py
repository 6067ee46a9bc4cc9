"""The Kafka key of an event: one user's events share it, so they stay in order in one partition."""

from __future__ import annotations

from typing import Any

from forwarder.core.identify import clean_id


def partition_key(event: Any) -> bytes:
    """``uid``, else ``moe_anonymous_id``, else ``moengage_user_id``: the id Amplitude will see first.

    Amplitude processes events of one device in arrival order, so keeping a user's events in one partition
    keeps them in MoEngage's order end to end. An event with no id at all gets the empty key.
    """
    if not isinstance(event, dict):
        return b""
    user_attributes = event.get("user_attributes")
    if not isinstance(user_attributes, dict):
        user_attributes = {}
    for raw in (
        event.get("uid"),
        user_attributes.get("moe_anonymous_id") or event.get("moe_anonymous_id"),
        user_attributes.get("moengage_user_id"),
    ):
        ident = clean_id(raw)
        if ident:
            return ident.encode()
    return b""
