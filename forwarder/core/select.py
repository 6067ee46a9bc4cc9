"""Which events the operator forwards: by code, channel, type, or ``all``."""

from __future__ import annotations

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
        tokens = [t.strip() for t in text.split(",") if t.strip()]
        if not tokens:
            raise ValueError("the selection is empty; use 'all' or a comma-separated list")
        channels = {c.casefold(): c for c in catalogue.channels}
        types = {t.casefold(): t for t in catalogue.types}
        events: set[EventDefinition] = set()
        extra: set[str] = set()
        for token in tokens:
            folded = token.casefold()
            if folded == "all":
                events.update(catalogue.events)
            elif folded in types:
                events.update(e for e in catalogue.events if e.type == types[folded])
            elif folded in channels:
                events.update(e for e in catalogue.events if e.channel == channels[folded])
            elif (event := catalogue.by_code(token)) is not None:
                events.add(event)
            elif any(ch.isspace() for ch in token):
                # Codes have no spaces; a spaced token is a misspelt channel or type, not a code.
                known = ", ".join((*catalogue.types, *catalogue.channels))
                raise ValueError(f"{token!r} is neither a channel nor a type (known: {known})")
            else:
                extra.add(token)
        return cls(frozenset(events), frozenset(extra), ",".join(tokens))

    def resolve(self, code: str, catalogue: Catalogue = CATALOGUE) -> EventDefinition | str | None:
        """The catalogue event or explicitly selected code to forward as, or None when not selected."""
        event = catalogue.by_code(code)
        if event is not None:
            return event if event in self.events else None
        return code if code in self.extra_codes else None
