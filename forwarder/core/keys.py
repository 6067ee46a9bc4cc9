"""The Kafka key of an event: one user's events share it, so they stay in order in one partition."""

from __future__ import annotations

from typing import Any

from forwarder.core.identify import clean_id, raw_anonymous_id, raw_moengage_user_id


def partition_key(event: Any) -> bytes:
    """``uid``, else ``moe_anonymous_id``, else ``moengage_user_id``: the id Amplitude will see first.

    Amplitude processes events of one device in arrival order, so keeping a user's events in one partition
    keeps them in MoEngage's order end to end. An event with no id at all gets the empty key.
    """
    if not isinstance(event, dict):
        return b""
    for raw in (event.get("uid"), raw_anonymous_id(event), raw_moengage_user_id(event)):
        ident = clean_id(raw)
        if ident:
            return ident.encode()
    return b""
