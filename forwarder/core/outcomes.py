"""Every event read ends in exactly one of these outcomes; nothing is lost silently."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from schemas.amplitude import AmplitudeEvent


class EventWarning(NamedTuple):
    """Something a user would want to know about an event that is still sent: counted by ``kind``.

    Kinds: ``cut_string``, ``id_not_scalar``, ``id_too_short``, ``missing_campaign_id``, ``implausible_time``;
    and, across the events of one input, ``duplicate_insert_id`` and ``repaired_utf8``.
    """

    kind: str
    text: str


@dataclass(slots=True)  # not frozen: one per forwarded event, and frozen __init__ costs a setattr per field
class Forwarded:
    """Selected, identified and mapped: to be sent to Amplitude."""

    code: str
    event: AmplitudeEvent
    # The event as JSON, encoded once here: delivery sizes and sends these bytes as they are.
    encoded: bytes
    # What Amplitude would change or reject (a cut string, an id that was a list): a dry run tells the truth.
    warnings: tuple[EventWarning, ...] = ()
    # (property, action) of each FORWARDER_PII rule applied to it: counted, never logged with a value.
    pii: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Filtered:
    """Not selected by the operator (``not_selected``), or outside a replay's time window: a normal outcome."""

    code: str
    reason: str = "not_selected"


@dataclass(frozen=True, slots=True)
class Dropped:
    """Not sendable because the user cannot be identified (``unidentifiable``, ``id_too_short``)."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """Input that breaks the contract: dead-lettered with the reason, never guessed at."""

    code: str | None
    reason: str
    detail: str = ""


Outcome = Forwarded | Filtered | Dropped | Invalid
