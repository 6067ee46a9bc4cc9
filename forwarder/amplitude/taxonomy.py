"""The catalogue's events in the project's taxonomy (Amplitude's Taxonomy API): each forwarded event type exists,
in category ``MoEngage``, with a description, and Delivery events are *inactive*.

Amplitude counts a user active on any active event; its docs name "Push Notification Sent" as the example of an
event to mark inactive, since a user who only received a campaign did not use the product. Delivery events (Email
Sent, Notification Received, SMS Delivered ...) forwarded as active inflate DAU/MAU in every chart; Interaction
events (opened, clicked) stay active.

Only the catalogue's event types are read or written; nothing is ever deleted.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import orjson

from forwarder.amplitude.dashboard import DashboardAPI, DashboardError
from forwarder.core.select import Selection
from schemas.catalogue import CATALOGUE, Catalogue

TAXONOMY_PATH = "/api/2/taxonomy/event"
CATEGORY = "MoEngage"


@dataclass(frozen=True)
class EventType:
    name: str
    category: str | None
    description: str | None
    # None: the answer did not say (treated as active, Amplitude's default).
    active: bool | None


@dataclass(frozen=True)
class Difference:
    event_type: str
    # "missing", or the fields that differ
    what: tuple[str, ...]
    wanted: EventType

    @property
    def missing(self) -> bool:
        return self.what == ("missing",)


def wanted_types(selection: Selection, catalogue: Catalogue = CATALOGUE) -> list[EventType]:
    """What the taxonomy should hold for each catalogue event the selection forwards."""
    wanted = []
    for event in catalogue.events:
        if selection.resolve(event.code, catalogue) is not event:
            continue
        description = f"MoEngage {event.code} ({event.channel}, {event.type}): {event.description}"
        wanted.append(EventType(event.name, CATEGORY, description, active=event.type != "Delivery"))
    return wanted


def differences(wanted: list[EventType], present: dict[str, EventType]) -> list[Difference]:
    found = []
    for event in wanted:
        have = present.get(event.name)
        if have is None:
            found.append(Difference(event.name, ("missing",), event))
            continue
        what = []
        if have.category != event.category:
            what.append(f"category {have.category or '(none)'} -> {event.category}")
        if (have.description or "") != event.description:
            what.append("description")
        if (have.active is not False) != event.active:
            what.append("active -> inactive" if not event.active else "inactive -> active")
        if what:
            found.append(Difference(event.name, tuple(what), event))
    return found


def _event_type(item: Any) -> EventType | None:
    if not isinstance(item, dict) or not isinstance(item.get("event_type"), str):
        return None
    category = item.get("category")
    name = category.get("name") if isinstance(category, dict) else category
    active = item.get("is_active")
    return EventType(
        item["event_type"],
        name if isinstance(name, str) else None,
        item.get("description") if isinstance(item.get("description"), str) else None,
        active if isinstance(active, bool) else None,
    )


async def read_taxonomy(api: DashboardAPI) -> dict[str, EventType]:
    response = await api.get(TAXONOMY_PATH)
    if response.status_code != 200:
        raise DashboardError(_refusal("reading the event types", response.status_code, response.text))
    try:
        data = orjson.loads(response.content)["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise DashboardError("the Taxonomy API answered something that is not its event list") from None
    found = (_event_type(item) for item in data) if isinstance(data, list) else ()
    return {event.name: event for event in found if event is not None}


async def apply(api: DashboardAPI, found: list[Difference]) -> None:
    """Creates what is missing and updates what differs, one event type at a time (the API's cost limit)."""
    for difference in found:
        wanted = difference.wanted
        fields = {"category": CATEGORY, "description": wanted.description or ""}
        if difference.missing:
            response = await api.request("POST", TAXONOMY_PATH, form={"event_type": wanted.name, **fields})
            if response.status_code not in (200, 201, 409):  # 409: it exists (a retried create went through)
                raise DashboardError(_refusal(f"creating {wanted.name!r}", response.status_code, response.text))
        path = f"{TAXONOMY_PATH}/{urllib.parse.quote(wanted.name, safe='')}"
        response = await api.request("PUT", path, form={**fields, "is_active": "true" if wanted.active else "false"})
        if response.status_code not in (200, 201):
            raise DashboardError(_refusal(f"updating {wanted.name!r}", response.status_code, response.text))


def _refusal(doing: str, status: int, text: str) -> str:
    return f"the Taxonomy API refused {doing} (HTTP {status}): " + text[:200].replace("\n", " ")
