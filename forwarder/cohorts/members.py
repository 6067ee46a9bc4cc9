"""What Amplitude sends about a cohort, and who of it MoEngage can be told about.

Two shapes arrive: a Cohort Webhooks payload (push: who entered or left) and a Behavioral Cohorts API export
(pull: the whole membership, a CSV with ``amplitude_id``, ``user_id`` and the requested properties). Identity,
as the integration guide says: the Amplitude ``user_id`` as MoEngage's ``uid`` first; without one, the user
property that holds MoEngage's anonymous id; a member with neither cannot be sent (``unmapped``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from forwarder.cohorts.requests import Member

MAX_ID_LENGTH = 1024


class PayloadError(ValueError):
    """A webhook body or export this module cannot read: one line that says why."""


@dataclass(frozen=True)
class CohortChange:
    """One webhook delivery: users entering (``in_cohort``) or leaving one cohort."""

    cohort_id: str
    cohort_name: str
    in_cohort: bool
    message_id: str
    computed_time: str
    users: list[dict[str, Any]]


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text[:MAX_ID_LENGTH] if text else None
    return None


def identity(user_id: Any, anonymous_id: Any, anonymous_field: str) -> Member | None:
    """User Id first, then the anonymous id, else None (the member is counted ``unmapped``)."""
    uid = _id(user_id)
    if uid is not None:
        return ("uid", uid)
    anonymous = _id(anonymous_id)
    return (anonymous_field, anonymous) if anonymous is not None else None


def parse_webhook(body: bytes) -> CohortChange:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("a cohort webhook body must be a JSON object")
    cohort_id = _id(data.get("cohort_id"))
    if cohort_id is None:
        raise PayloadError("cohort_id is missing")
    in_cohort = data.get("in_cohort")
    if not isinstance(in_cohort, bool):
        raise PayloadError("in_cohort must be true or false")
    users = data.get("users")
    if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
        raise PayloadError("users must be an array of objects")
    name = data.get("cohort_name")
    return CohortChange(
        cohort_id=cohort_id,
        cohort_name=name if isinstance(name, str) else cohort_id,
        in_cohort=in_cohort,
        message_id=str(data.get("message_id") or ""),
        computed_time=str(data.get("computed_time") or ""),
        users=users,
    )


def webhook_members(change: CohortChange, anonymous_property: str, anonymous_field: str) -> tuple[list[Member], int]:
    """(members MoEngage can be told about, members with neither id)."""
    members: list[Member] = []
    unmapped = 0
    for user in change.users:
        properties = user.get("user_properties")
        anonymous = properties.get(anonymous_property) if isinstance(properties, dict) else None
        member = identity(user.get("user_id"), anonymous, anonymous_field)
        if member is None:
            unmapped += 1
        else:
            members.append(member)
    return members, unmapped


def export_members(lines: Iterable[str], anonymous_property: str, anonymous_field: str) -> Iterator[Member | None]:
    """Each row of a cohort export as a member, or None for a row with neither id. The export names a property
    column ``<property>`` (older exports ``user_properties.<property>`` or ``gp:<property>``)."""
    reader = csv.reader(lines)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    if "user_id" not in header:
        raise PayloadError("the export has no user_id column")
    user_column = header.index("user_id")
    candidates = (anonymous_property, f"user_properties.{anonymous_property}", f"gp:{anonymous_property}")
    anonymous_column = next((header.index(c) for c in candidates if c in header), None)
    for row in reader:
        if not row:
            continue
        user_id = row[user_column] if user_column < len(row) else None
        anonymous = row[anonymous_column] if anonymous_column is not None and anonymous_column < len(row) else None
        yield identity(user_id or None, anonymous or None, anonymous_field)
