"""Realistic MoEngage Streams traffic for the demo, tests and benchmarks (deterministic for a seed).

Mixes every channel of the catalogue, events of users with a uid, with only moe_anonymous_id, with
neither (dropped as unidentifiable) and with too-short ids, plus user-action events that the default
selection filters out.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from schemas.catalogue import CATALOGUE

BASE_TIME = 1_764_000_000  # 2025-11-24, epoch seconds as MoEngage sends them

CHANNEL_FIELDS = {"Email": "email_id", "Push": "push_id", "SMS": "mobile_number"}


def make_event(rng: random.Random, index: int, *, unidentifiable_share: float = 0.05) -> dict[str, Any]:
    user_number = rng.randrange(50_000)
    if rng.random() < 0.03:
        # An app event, not a campaign event: filtered under the default selection.
        code, name, channel, event_type = "ADD_TO_CART", "Add To Cart", None, "USER_ACTION_EVENT"
    else:
        definition = rng.choice(CATALOGUE.events)
        code, name, channel, event_type = (
            definition.code,
            definition.name,
            definition.channel,
            "CAMPAIGN_EVENT",
        )
    roll = rng.random()
    uid: Any = f"customer-{user_number:06d}"
    anon: Any = f"anon-{user_number:08x}"
    if roll < unidentifiable_share:
        uid, anon = None, None
    elif roll < unidentifiable_share + 0.01:
        uid, anon = "u1", None  # too short for Amplitude
    elif roll < 0.25:
        uid = None  # anonymous visitor: device_id only
    elif roll < 0.30:
        uid = 100_000 + user_number  # numeric uid, as some accounts send
    campaign = rng.randrange(40)
    event: dict[str, Any] = {
        "event_name": name,
        "event_code": code,
        "event_uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_time": BASE_TIME + index,
        "event_type": event_type,
        "event_source": "MOENGAGE",
        "uid": uid,
        "event_attributes": {
            "campaign_id": f"cmp-{campaign:04d}",
            "campaign_name": f"Campaign {campaign}",
            "campaign_type": rng.choice(["GENERAL", "SMART_TRIGGER", "Event Trigger", "PERIODIC"]),
            "campaign_channel": channel or "App",
        },
        "user_attributes": {"moengage_user_id": f"moe-{user_number:08d}"},
        "device_attributes": {"moengage_device_id": f"dev-{user_number:08d}"},
    }
    if anon is not None:
        event["user_attributes"]["moe_anonymous_id"] = anon
    if channel in CHANNEL_FIELDS:
        field = CHANNEL_FIELDS[channel]
        event[field] = {
            "email_id": f"user{user_number}@example.com",
            "push_id": f"fcm-{user_number:010d}",
            "mobile_number": f"+1555{user_number:07d}",
        }[field]
    if campaign % 4 == 0:
        event["event_attributes"].update({"parent_flow_id": f"flow-{campaign}", "parent_flow_name": f"Flow {campaign}"})
    if campaign % 3 == 0:
        event["event_attributes"].update(
            {"variation_id": str(rng.randrange(1, 4)), "locale_id": "fr", "locale_name": "French"}
        )
    return event


def streams_requests(
    total_events: int, per_request: int = 100, seed: int = 7, apps: Sequence[str] = ("Demo App",)
) -> Iterator[dict[str, Any]]:
    """Streams request bodies as MoEngage sends them (100 events each by default); ``apps``: the apps whose
    ``app_name`` they carry in turn (several routes)."""
    rng = random.Random(seed)
    for start in range(0, total_events, per_request):
        count = min(per_request, total_events - start)
        yield {
            "app_name": apps[start // per_request % len(apps)],
            "source": "MOENGAGE",
            "moe_request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "events": [make_event(rng, start + i) for i in range(count)],
        }


def numbered_body(n: int, apps: Sequence[str], users: int, sequence: dict[str, int]) -> dict[str, Any]:
    """The ``n``-th Streams body of a run over several apps (one app per body, in turn), 10 events; each user's
    events carry ``event_attributes.seq``, their number in the order they were sent (``sequence`` keeps count), so
    the order they arrive in can be checked (``devkit.observe.out_of_user_order``)."""
    app = apps[n % len(apps)]
    events = []
    for k in range(10):
        user = f"{app.split()[-1].lower()}-user-{(n * 10 + k) % users:03d}"
        sequence[user] = sequence.get(user, 0) + 1
        events.append(
            {
                "event_code": "MOE_EMAIL_SENT",
                "event_uuid": f"{app}-{n}-{k}",
                "event_time": 1_764_000_000 + n,
                "uid": user,
                "event_attributes": {"campaign_id": "c1", "seq": sequence[user]},
            }
        )
    return {"app_name": app, "events": events}
