"""decode -> select -> identify -> map: every event gets exactly one outcome, and nothing raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from forwarder.core.decode import DEFAULT_MAX_MESSAGE_BYTES, Decoded, DecodeError, decode_message
from forwarder.core.identify import AMPLITUDE_DEFAULT_MIN_ID_LENGTH, identify
from forwarder.core.mapping import add_personal_data, to_amplitude
from forwarder.core.outcomes import Dropped, Filtered, Forwarded, Invalid, Outcome
from forwarder.core.pii import PiiRules
from forwarder.core.select import Selection
from forwarder.core.timeparse import TimeError, to_epoch_ms
from forwarder.core.user_properties import UserPropertyRules
from schemas.catalogue import CATALOGUE, Catalogue, EventDefinition


@dataclass(frozen=True, slots=True)
class MappingRules:
    selection: Selection = field(default_factory=lambda: Selection.parse("all"))
    min_id_length: int = AMPLITUDE_DEFAULT_MIN_ID_LENGTH
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    catalogue: Catalogue = CATALOGUE
    # A replay's [from, to) in epoch ms on the event's own time; None on the live path.
    window: tuple[int, int] | None = None
    # FORWARDER_USER_PROPERTIES and FORWARDER_PII; None: the guide's behaviour (none sent, nothing changed).
    user_properties: UserPropertyRules | None = None
    pii: PiiRules | None = None
    # code -> what the selection made of it: a few dozen codes cover a whole stream.
    _targets: dict[str, EventDefinition | str | None] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def target(self, code: str) -> EventDefinition | str | None:
        targets = self._targets
        try:
            return targets[code]
        except KeyError:
            target = self.selection.resolve(code, self.catalogue)
            if len(targets) < _MAX_CACHED_CODES:  # unknown codes are unbounded; the cache is not
                targets[code] = target
            return target


_MAX_CACHED_CODES = 4096


def _code_of(event: dict[str, Any], catalogue: Catalogue) -> str | None:
    code = event.get("event_code")
    if isinstance(code, str) and code.strip():
        return code.strip()
    # Only a display name: the catalogue knows the code for the guide's 44 events.
    name = event.get("event_name")
    if isinstance(name, str) and (known := catalogue.by_name(name.strip())) is not None:
        return known.code
    return None


def process_event(event: Any, rules: MappingRules) -> Outcome:
    if not isinstance(event, dict):
        return Invalid(None, "wrong_type", f"an event must be a JSON object, got {type(event).__name__}")
    code = event.get("event_code")
    if type(code) is not str or not code or code[0].isspace() or code[-1].isspace():
        code = _code_of(event, rules.catalogue)
        if code is None:
            return Invalid(None, "missing_event_code", "the event has no usable event_code or known event_name")

    target = rules.target(code)
    if target is None:
        return Filtered(code)
    if isinstance(target, str):
        name = event.get("event_name")
        event_type = name.strip() if isinstance(name, str) and name.strip() else code
    else:
        event_type = target.name

    if rules.window is not None:
        # A replay acts only on its window: outside it nothing else about the event matters.
        try:
            if not rules.window[0] <= to_epoch_ms(event.get("event_time")) < rules.window[1]:
                return Filtered(code, "outside_window")
        except TimeError:
            pass  # invalid either way; the checks below say why

    identity = identify(event, rules.min_id_length)
    if identity.drop_reason is not None:
        return Dropped(code, identity.drop_reason)

    try:
        time_ms = to_epoch_ms(event.get("event_time"))
    except TimeError as exc:
        return Invalid(code, exc.reason, str(exc))
    for key in ("event_attributes", "user_attributes"):
        value = event.get(key)
        if type(value) is not dict and value is not None and not isinstance(value, dict):
            return Invalid(code, "wrong_type", f"{key} must be an object, got {type(value).__name__}")

    amplitude_event, warnings = to_amplitude(
        event, code, event_type, time_ms, identity, catalogue_event=not isinstance(target, str)
    )
    applied: tuple[tuple[str, str], ...] = ()
    if rules.user_properties is not None or rules.pii is not None:
        more = list(warnings)
        applied = add_personal_data(amplitude_event, event, rules.user_properties, rules.pii, more)
        warnings = tuple(more)
    try:
        encoded = orjson.dumps(amplitude_event)
    except orjson.JSONEncodeError as exc:
        # e.g. an attribute holding an integer beyond 64 bits: no JSON encoder Amplitude reads takes it.
        return Invalid(code, "unencodable", str(exc))
    return Forwarded(code, amplitude_event, encoded, warnings, applied)


@dataclass(frozen=True, slots=True)
class MessageResult:
    """The outcome of one Kafka message (or input document): a whole-message error, or one per event."""

    error: DecodeError | None
    events: list[Any]
    outcomes: list[Outcome]
    # Bytes that were not UTF-8 were replaced (U+FFFD) and the events kept; ``request_id`` names MoEngage's request.
    repaired: bool = False
    request_id: str | None = None


def process_message(raw: bytes, rules: MappingRules, max_bytes: int | None = None) -> MessageResult:
    """``max_bytes``: the size limit, when it is not the live path's ``rules.max_message_bytes`` (a file)."""
    decoded = decode_message(raw, rules.max_message_bytes if max_bytes is None else max_bytes)
    if isinstance(decoded, DecodeError):
        return MessageResult(decoded, [], [Invalid(None, decoded.reason, decoded.detail)])
    return process_decoded(decoded, rules)


def process_decoded(decoded: Decoded, rules: MappingRules) -> MessageResult:
    """``process_message`` once the message is decoded (the worker decodes first: the envelope picks the rules)."""
    outcomes = [process_event(event, rules) for event in decoded.events]
    return MessageResult(None, decoded.events, outcomes, decoded.repaired, decoded.request_id)
