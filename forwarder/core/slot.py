"""Where the reconciliation ledger files an event: the hour of its own time (UTC) and its campaign.

Every outcome gets a slot, not only delivered events: "why did campaign X lose events in hour H" is the
question the ledger answers. An event without a usable time or campaign is filed under ``NO_HOUR`` or ``""``.
"""

from __future__ import annotations

from typing import Any

from forwarder.core.counting import NO_HOUR
from forwarder.core.mapping import raw_campaign_id
from forwarder.core.timeparse import TimeError, to_epoch_ms

HOUR_MS = 3_600_000
# A campaign id is a short identifier; a longer value is cut so one odd event cannot bloat the ledger.
MAX_CAMPAIGN_LENGTH = 128

Slot = tuple[int, str]
NO_SLOT: Slot = (NO_HOUR, "")


def campaign_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return str(value).strip()[:MAX_CAMPAIGN_LENGTH]
    if kind is int or kind is float:
        return str(value)[:MAX_CAMPAIGN_LENGTH]
    return ""  # None, or a list/object where an id should be: no campaign to file it under


def slot_of(event: Any, time_ms: int | None = None) -> Slot:
    """``time_ms``: the event's time when the mapping already parsed it (every forwarded event)."""
    if type(event) is not dict:
        return NO_SLOT
    if time_ms is None:
        try:
            time_ms = to_epoch_ms(event.get("event_time"))
        except TimeError:
            return NO_HOUR, campaign_text(raw_campaign_id(event))
    return time_ms // HOUR_MS, campaign_text(raw_campaign_id(event))
