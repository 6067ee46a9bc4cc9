"""The 44 campaign events of the integration guide, loaded from ``event_codes.tsv``.

The TSV is the single source: the code and the ``forwarder events`` listing read it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from importlib import resources


# eq=False: identity equality and hashing. Each event is a catalogue singleton, and the selection checks
# membership for every event read; hashing six fields each time showed up in the profile.
@dataclass(frozen=True, slots=True, eq=False)
class EventDefinition:
    name: str
    code: str
    type: str
    channel: str
    description: str
    aliases: tuple[str, ...]

    @property
    def codes(self) -> tuple[str, ...]:
        """The canonical code first, then the codes other MoEngage pages use for the same event."""
        return (self.code, *self.aliases)


class Catalogue:
    def __init__(self, events: tuple[EventDefinition, ...]) -> None:
        self.events = events
        self._by_code: dict[str, EventDefinition] = {}
        for event in events:
            for code in event.codes:
                if code in self._by_code:
                    raise ValueError(f"event code {code!r} is listed twice in the catalogue")
                self._by_code[code] = event
        # MoEngage accounts differ in case ("iOS_IN_APP_SHOWN"); exact match first, then case-insensitive.
        self._by_code_folded = {code.casefold(): event for code, event in self._by_code.items()}
        self._by_name_folded = {event.name.casefold(): event for event in events}

    @classmethod
    def from_tsv(cls, text: str) -> Catalogue:
        rows = csv.DictReader(text.splitlines(), delimiter="\t")
        events = tuple(
            EventDefinition(
                name=row["name"].strip(),
                code=row["code"].strip(),
                type=row["type"].strip(),
                channel=row["channel"].strip(),
                description=row["description"].strip(),
                aliases=tuple(a.strip() for a in (row.get("aliases") or "").split(",") if a.strip()),
            )
            for row in rows
        )
        return cls(events)

    def by_code(self, code: str) -> EventDefinition | None:
        return self._by_code.get(code) or self._by_code_folded.get(code.casefold())

    def by_name(self, name: str) -> EventDefinition | None:
        return self._by_name_folded.get(name.casefold())

    @cached_property
    def channels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(event.channel for event in self.events))

    @cached_property
    def types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(event.type for event in self.events))

    def __len__(self) -> int:
        return len(self.events)


def _load() -> Catalogue:
    text = resources.files("schemas").joinpath("event_codes.tsv").read_text(encoding="utf-8")
    return Catalogue.from_tsv(text)


CATALOGUE = _load()
