"""MoEngage Cohort Sync API request bodies: members in requests under MoEngage's 128 KB limit, segment names
without the characters MoEngage refuses.

``POST /v1/integrations/cohortsync``: ``{"action": "add_members" | "remove_members", "partner": ..., "parameters":
{"cohort_name", "cohort_id", "members": [{"uid": ...}]}}`` (shared/spec/cohort-sync.md, "MoEngage side").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import orjson

# MoEngage answers 413 above 128 KB; a little room for proxies' accounting of the same body.
MAX_BODY_BYTES = 128 * 1024 - 512
PARTNER = "amplitude"
# Characters MoEngage refuses in a cohort name.
REFUSED_IN_NAMES = frozenset('|*?\\:<>=$"')
ACTIONS = ("add_members", "remove_members")

# A member as MoEngage takes it: (field, value), e.g. ("uid", "customer-1") or ("moe_anonymous_id", "a-9").
Member = tuple[str, str]


def segment_name(prefix: str, cohort_name: str) -> str:
    """``prefix`` + the cohort's name, refused characters dropped, spaces collapsed; never empty."""
    cleaned = "".join(" " if c in REFUSED_IN_NAMES else c for c in f"{prefix}{cohort_name}")
    return " ".join(cleaned.split()) or "Amplitude cohort"


def bodies(
    action: str, cohort_id: str, name: str, members: Sequence[Member], max_bytes: int = MAX_BODY_BYTES
) -> Iterator[tuple[bytes, int]]:
    """(request body, members in it), each body at most ``max_bytes``, members in the order given."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    head = orjson.dumps(
        {"action": action, "partner": PARTNER, "parameters": {"cohort_name": name, "cohort_id": cohort_id}}
    )
    # {"action":..,"parameters":{..}} -> splice ,"members":[...] into parameters.
    open_part = head[:-2] + b',"members":['
    close_part = b"]}}"
    budget = max_bytes - len(open_part) - len(close_part)
    chunk: list[bytes] = []
    size = 0
    for field, value in members:
        encoded = orjson.dumps({field: value})
        if len(encoded) + 1 > budget:
            raise ValueError(f"a member id of {len(value)} characters cannot fit a request")
        if chunk and size + len(encoded) + 1 > budget:
            yield open_part + b",".join(chunk) + close_part, len(chunk)
            chunk, size = [], 0
        chunk.append(encoded)
        size += len(encoded) + 1
    if chunk:
        yield open_part + b",".join(chunk) + close_part, len(chunk)
