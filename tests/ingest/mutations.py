"""Streams bodies as the world sends them: real payloads (the shared sample, the project's traffic generator) with
keys dropped, values of another type, placeholder ids, huge strings, events that are not objects, another
source; and as bytes: truncated, with bytes that are not UTF-8, wrapped in an array."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

from devkit.traffic import streams_requests

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "samples" / "streams-request.json"
CORPUS: list[dict[str, Any]] = [
    orjson.loads(SAMPLE.read_bytes()),
    *streams_requests(40, per_request=10, seed=31),
]
OTHER_TYPES = [None, 0, -1, 1.5, True, "", "text", [], [1], {}, {"a": 1}]
PLACEHOLDERS = ["null", "undefined", "0", "", "None", "-1"]


@st.composite
def mutated_document(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 4))):
        events = body.get("events")
        target: dict[str, Any] = body
        if isinstance(events, list) and events and isinstance(events[0], dict) and draw(st.booleans()):
            index = draw(st.integers(0, len(events) - 1))
            if isinstance(events[index], dict):
                target = events[index]
        keys = sorted(target)
        kind = draw(st.sampled_from(["drop", "retype", "placeholder", "huge", "not_an_event", "source", "empty"]))
        if kind == "drop" and keys:
            del target[draw(st.sampled_from(keys))]
        elif kind == "retype" and keys:
            target[draw(st.sampled_from(keys))] = draw(st.sampled_from(OTHER_TYPES))
        elif kind == "placeholder":
            target[draw(st.sampled_from(["uid", "event_uuid", "moe_request_id"]))] = draw(st.sampled_from(PLACEHOLDERS))
        elif kind == "huge" and keys:
            target[draw(st.sampled_from(keys))] = "x" * draw(st.sampled_from([1_000, 20_000]))
        elif kind == "not_an_event" and isinstance(events, list) and events:
            events[draw(st.integers(0, len(events) - 1))] = draw(st.sampled_from(OTHER_TYPES[:7]))
        elif kind == "source":
            body["source"] = draw(st.sampled_from(["Segment", "moengage", "MoEngage", 5, None]))
        elif kind == "empty":
            body["events"] = []
    return body


@st.composite
def mutated_body(draw: st.DrawFn) -> bytes:
    raw = orjson.dumps(draw(mutated_document()))
    damage = draw(st.sampled_from(["none", "none", "truncate", "bad_bytes", "array"]))
    if damage == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if damage == "bad_bytes":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\x92", b"\xc3"])) + raw[at:]
    if damage == "array":
        return b"[" + raw + b"]"
    return raw
