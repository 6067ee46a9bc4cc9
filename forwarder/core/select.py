"""Which events the operator forwards: by code, channel, type, or ``all``.

A token is ``all``, a type or channel name (these win when a code has the same name), a catalogue code or alias,
or else any other code exactly as MoEngage emits it, spaces and all (``Device Uninstall``). ``code:``,
``channel:`` and ``type:`` say which is meant; a token in double quotes may hold commas
(``"code:A, B",Email``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from schemas.catalogue import CATALOGUE, Catalogue, EventDefinition


@dataclass(frozen=True, slots=True)
class Selection:
    """A parsed ``FORWARDER_EVENTS`` value.

    ``events`` are the selected catalogue events (an alias counts as its canonical event);
    ``extra_codes`` are codes outside the catalogue that the operator named explicitly
    (for example a user-action event): only those non-catalogue codes are forwarded.
    """

    events: frozenset[EventDefinition]
    extra_codes: frozenset[str]
    text: str

    @classmethod
    def parse(cls, text: str, catalogue: Catalogue = CATALOGUE) -> Selection:
        try:
            fields = next(csv.reader([text], skipinitialspace=True, strict=True), [])
        except csv.Error as exc:
            raise ValueError(f"cannot split the selection: {exc}") from None
        tokens = [t.strip() for t in fields if t.strip()]
        if not tokens:
            raise ValueError("the selection is empty; use 'all' or a comma-separated list")
        channels = {c.casefold(): c for c in catalogue.channels}
        types = {t.casefold(): t for t in catalogue.types}
        events: set[EventDefinition] = set()
        extra: set[str] = set()
        for token in tokens:
            kind, _, rest = token.partition(":")
            kind = kind.strip().casefold()
            rest = rest.strip()
            folded = token.casefold()
            if kind == "code" and rest:
                event = catalogue.by_code(rest)
                if event is not None:
                    events.add(event)
                else:
                    extra.add(rest)
            elif kind == "channel":
                if rest.casefold() not in channels:
                    raise ValueError(f"{rest!r} is not a channel (known: {', '.join(catalogue.channels)})")
                events.update(e for e in catalogue.events if e.channel == channels[rest.casefold()])
            elif kind == "type":
                if rest.casefold() not in types:
                    raise ValueError(f"{rest!r} is not a type (known: {', '.join(catalogue.types)})")
                events.update(e for e in catalogue.events if e.type == types[rest.casefold()])
            elif folded == "all":
                events.update(catalogue.events)
            elif folded in types:
                events.update(e for e in catalogue.events if e.type == types[folded])
            elif folded in channels:
                events.update(e for e in catalogue.events if e.channel == channels[folded])
            elif (event := catalogue.by_code(token)) is not None:
                events.add(event)
            else:
                extra.add(token)
        return cls(frozenset(events), frozenset(extra), ",".join(tokens))

    def describe_extra(self) -> str | None:
        """A note for the operator when codes outside the catalogue were named: a typo there selects nothing."""
        if not self.extra_codes:
            return None
        names = ", ".join(repr(c) for c in sorted(self.extra_codes))
        return f"not catalogue codes, channels or types, so forwarded only where the code is exactly: {names}"

    def resolve(self, code: str, catalogue: Catalogue = CATALOGUE) -> EventDefinition | str | None:
        """The catalogue event or explicitly selected code to forward as, or None when not selected."""
        event = catalogue.by_code(code)
        if event is not None:
            return event if event in self.events else None
        return code if code in self.extra_codes else None
