"""A local MoEngage-compatible Cohort Sync API (``forwarder moengage-local``), for demos, dry runs and tests.

``POST /v1/integrations/cohortsync`` as MoEngage documents it (shared/spec/cohort-sync.md): HTTP Basic
``workspace_id:data_api_key`` and the ``MOE-APPKEY`` header (401), ``application/json`` only (415), bodies up
to 128 KB (413), at most ``requests_per_minute`` per workspace (429 with ``x-ratelimit-*`` headers), 400 for a
body it cannot use, errors as ``{"status": "fail", "error": {"message", "type", "request_id"}}``. A 200 means
accepted, not applied: members are applied after ``apply_delay_s``, and only users MoEngage knows (its
registry) are added; users are never created. Faults on demand, as the local Amplitude service has.

Local paths: ``POST /_local/users`` (``{"uid": [...], "moe_anonymous_id": [...]}``: users MoEngage knows),
``GET /_local/segments`` (each segment's name and members), ``GET /_local/stats``, ``POST /_local/faults``
(``error_rates``, ``outage_s``, ``latency_ms``), ``POST /_local/reset``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import random
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MAX_BODY_BYTES = 128 * 1024
REQUESTS_PER_MINUTE = 300
ACTIONS = ("add_members", "remove_members")


@dataclass
class MoEngageFaults:
    error_rates: dict[int, float] = field(default_factory=dict)
    outage_until: float = 0.0
    latency_s: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoEngageFaults:
        unknown = set(data) - {"error_rates", "outage_s", "latency_ms"}
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        return cls(
            error_rates={int(k): float(v) for k, v in dict(data.get("error_rates") or {}).items()},
            outage_until=time.time() + float(data.get("outage_s") or 0),
            latency_s=float(data.get("latency_ms") or 0) / 1000,
        )


@dataclass
class Segment:
    name: str
    members: set[tuple[str, str]] = field(default_factory=set)


class MoEngageService:
    def __init__(
        self,
        workspace_id: str,
        data_api_key: str,
        requests_per_minute: int = REQUESTS_PER_MINUTE,
        apply_delay_s: float = 0.0,
        anonymous_field: str = "moe_anonymous_id",
        rate_window_s: float = 60.0,
    ) -> None:
        """``rate_window_s``: the window of ``requests_per_minute`` (MoEngage's is a minute; a test shortens it)."""
        self.workspace_id = workspace_id
        self.rate_window_s = rate_window_s
        self._key = data_api_key
        self.requests_per_minute = requests_per_minute
        self.apply_delay_s = apply_delay_s
        self.anonymous_field = anonymous_field
        self.faults = MoEngageFaults()
        self.lock = threading.Lock()
        self.known: set[tuple[str, str]] = set()
        self.segments: dict[str, Segment] = {}
        self.responses: Counter[int] = Counter()
        self.members_sent = 0
        self.unknown_ignored = 0
        self._recent: deque[float] = deque()
        self.app = Starlette(
            routes=[
                Route("/v1/integrations/cohortsync", self._sync, methods=["POST"]),
                Route("/_local/users", self._users, methods=["POST"]),
                Route("/_local/segments", self._segments, methods=["GET"]),
                Route("/_local/stats", self._stats, methods=["GET"]),
                Route("/_local/faults", self._set_faults, methods=["POST"]),
                Route("/_local/reset", self._reset, methods=["POST"]),
            ]
        )

    def _fail(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
        with self.lock:
            self.responses[status] += 1
        body = {"status": "fail", "error": {"message": message, "type": kind, "request_id": uuid.uuid4().hex}}
        return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)

    def _authorised(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (
            scheme.lower() == "basic"
            and hmac.compare_digest(user, self.workspace_id)
            and hmac.compare_digest(password, self._key)
            and hmac.compare_digest(request.headers.get("moe-appkey", ""), self.workspace_id)
        )

    def _over_rate(self) -> tuple[bool, int]:
        """(refused, seconds until a request is allowed again): a sliding minute per workspace."""
        now = time.monotonic()
        with self.lock:
            while self._recent and now - self._recent[0] >= self.rate_window_s:
                self._recent.popleft()
            if len(self._recent) >= self.requests_per_minute:
                return True, max(1, int(self.rate_window_s - (now - self._recent[0])) + 1)
            self._recent.append(now)
            return False, 0

    async def _sync(self, request: Request) -> Response:
        faults = self.faults
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        if not self._authorised(request):
            return self._fail(401, "Authentication required", "invalid workspace id or data API key")
        if time.time() < faults.outage_until:
            return self._fail(503, "Service Unavailable", "temporarily unavailable")
        for status, rate in faults.error_rates.items():
            if random.random() < rate:
                return self._fail(status, "Internal Server Error", "something went wrong")
        refused, reset_s = self._over_rate()
        if refused:
            headers = {
                "x-ratelimit-limit": str(self.requests_per_minute),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(reset_s),
            }
            return self._fail(429, "Too Many Requests", "rate limit exceeded", headers)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return self._fail(415, "Unsupported Media Type", "content type must be application/json")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return self._fail(413, "Payload Too Large", f"body is {len(raw)} bytes, the limit is {MAX_BODY_BYTES}")
        try:
            body = orjson.loads(raw)
            action = body["action"]
            parameters = body["parameters"]
            cohort_id = str(parameters["cohort_id"])
            name = str(parameters["cohort_name"])
            members = parameters["members"]
            if action not in ACTIONS or not isinstance(members, list):
                raise ValueError("action or members")
            parsed = [_member(m) for m in members]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return self._fail(400, "Bad Request", f"invalid body: {exc}")
        if any(not ch.isprintable() or ch in '|*?\\:<>=$"' for ch in name):
            return self._fail(400, "Bad Request", "cohort_name contains a character that is not allowed")
        with self.lock:
            self.responses[200] += 1
            self.members_sent += len(parsed)
        if self.apply_delay_s:  # accepted now, applied later: MoEngage processes asynchronously
            asyncio.get_running_loop().call_later(self.apply_delay_s, self._apply, action, cohort_id, name, parsed)
        else:
            self._apply(action, cohort_id, name, parsed)
        return Response(
            orjson.dumps(
                {"status": "success", "message": "Your request has been accepted", "request_id": uuid.uuid4().hex}
            ),
            media_type="application/json",
        )

    def _apply(self, action: str, cohort_id: str, name: str, members: list[tuple[str, str]]) -> None:
        with self.lock:
            segment = self.segments.setdefault(cohort_id, Segment(name))
            segment.name = name
            if action == "remove_members":
                segment.members.difference_update(members)
                return
            for member in members:
                if member in self.known:
                    segment.members.add(member)
                else:
                    self.unknown_ignored += 1

    async def _users(self, request: Request) -> Response:
        try:
            data = orjson.loads(await request.body())
            new = {("uid", str(u)) for u in data.get("uid", [])}
            new |= {(self.anonymous_field, str(a)) for a in data.get(self.anonymous_field, [])}
        except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
            return Response(orjson.dumps({"error": str(exc)}), status_code=400, media_type="application/json")
        with self.lock:
            self.known |= new
            total = len(self.known)
        return Response(orjson.dumps({"known_users": total}), media_type="application/json")

    async def _segments(self, request: Request) -> Response:
        with self.lock:
            body = {
                cohort_id: {"name": s.name, "members": sorted(f"{f}:{v}" for f, v in s.members)}
                for cohort_id, s in self.segments.items()
            }
        return Response(orjson.dumps(body), media_type="application/json")

    async def _stats(self, request: Request) -> Response:
        with self.lock:
            body = {
                "responses": {str(k): v for k, v in sorted(self.responses.items())},
                "members_sent": self.members_sent,
                "unknown_ignored": self.unknown_ignored,
                "known_users": len(self.known),
                "segments": {k: len(s.members) for k, s in self.segments.items()},
            }
        return Response(orjson.dumps(body), media_type="application/json")

    async def _set_faults(self, request: Request) -> Response:
        try:
            self.faults = MoEngageFaults.from_dict(orjson.loads(await request.body()))
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            return Response(orjson.dumps({"error": str(exc)}), status_code=400, media_type="application/json")
        return Response(orjson.dumps({"ok": True}), media_type="application/json")

    async def _reset(self, request: Request) -> Response:
        with self.lock:
            self.segments.clear()
            self.responses.clear()
            self.members_sent = self.unknown_ignored = 0
            self._recent.clear()
        return Response(orjson.dumps({"ok": True}), media_type="application/json")


def _member(value: Any) -> tuple[str, str]:
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError("a member is an object with one identifier")
    ((field_name, ident),) = value.items()
    if not isinstance(ident, str | int) or isinstance(ident, bool) or not str(ident).strip():
        raise ValueError(f"member {field_name!r} has no usable value")
    return str(field_name), str(ident)
