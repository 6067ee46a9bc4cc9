"""A local Amplitude-compatible service: ingestion by HTTP V2 (``/2/httpapi``) and Batch (``/batch``), and the
Dashboard REST API's Event Segmentation (``/api/2/events/segmentation``), answered from what it accepted, and the
cohorts side (Behavioral Cohorts API, Cohort Webhooks sender: ``devkit.amplitude_cohorts``).

It validates requests as Amplitude documents them (shared/spec/amplitude-api.md), answers with Amplitude's
response bodies, injects faults on demand, and records what it accepted so a run can be checked:
``GET /_local/stats``, ``GET /_local/events``, ``GET /_local/arrivals``, ``POST /_local/faults``,
``POST /_local/reset``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devkit.amplitude_cohorts import LocalCohorts
from devkit.amplitude_taxonomy import LocalTaxonomy
from forwarder.amplitude.limits import LIMITS, ApiLimits

# Amplitude's own rules, written down here from its HTTP V2 documentation rather than imported from the core: the
# service is the judge of what the core sends, so its verdict must not share the core's code.
DEFAULT_MIN_ID_LENGTH = 5
INVALID_IDS = frozenset(
    ("anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", "", "{}", "lmy47d", "0", "-1")
) | {"00000000-0000-0000-0000-000000000000"}

PATHS = {"/2/httpapi": "http", "/batch": "batch"}


@dataclass
class Faults:
    """What to get wrong, and how often. Rates are probabilities per request (0..1)."""

    error_rates: dict[int, float] = field(default_factory=dict)  # {500: 0.1, 503: 0.05, ...}
    timeout_rate: float = 0.0  # hold the request open for ``timeout_s`` and answer nothing useful
    timeout_s: float = 30.0
    latency_s: float = 0.0
    throttled_users: set[str] = field(default_factory=set)
    throttled_devices: set[str] = field(default_factory=set)
    quota_users: set[str] = field(default_factory=set)
    quota_devices: set[str] = field(default_factory=set)
    invalid_insert_ids: set[str] = field(default_factory=set)  # 400 events_with_invalid_fields for these
    invalid_key: bool = False
    # Until this wall-clock time every request gets ``outage_status`` (an outage window).
    outage_until: float = 0.0
    outage_status: int = 503
    # Per event: answer 200 but keep nothing of it, as if Amplitude lost it after accepting it (the
    # reconciliation report must flag exactly the rows these fall in).
    drop_silently_rate: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        # ``outage_s`` is a shorthand the faults endpoint turns into ``outage_until``; ``latency_ms`` is
        # ``latency_s`` in milliseconds (a fixed answer delay: Amplitude's real round trip is ~150 ms).
        known = {f.name for f in fields(cls)} | {"outage_s", "latency_ms"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        values = {k: v for k, v in data.items() if k not in ("outage_s", "latency_ms")}
        if "latency_ms" in data:
            values["latency_s"] = float(data["latency_ms"]) / 1000
        if "error_rates" in values:
            values["error_rates"] = {int(k): float(v) for k, v in values["error_rates"].items()}
        for name in (
            "throttled_users",
            "throttled_devices",
            "quota_users",
            "quota_devices",
            "invalid_insert_ids",
        ):
            if name in values:
                values[name] = set(values[name])
        return cls(**values)


@dataclass
class Recorder:
    """What the service accepted, by insert_id, and how it answered."""

    keep_events: bool = True
    events: list[dict[str, Any]] = field(default_factory=list)
    by_insert_id: Counter[str] = field(default_factory=Counter)
    # When each insert_id was first accepted (wall clock): end-to-end latency without polling.
    first_accepted_at: dict[str, float] = field(default_factory=dict)
    first_at: float | None = None
    last_at: float | None = None
    responses: Counter[int] = field(default_factory=Counter)
    requests: int = 0
    accepted: int = 0
    # What the Dashboard API counts: unique insert_ids by (event_type, minute since the epoch, event property
    # $source); days are cut in the project's time zone when asked (every zone's offset is whole minutes).
    counted: Counter[tuple[str, int | None, str]] = field(default_factory=Counter)
    # Accepted with 200 and then lost on purpose (``drop_silently_rate``): insert_id, event_type, time.
    silently_dropped: list[tuple[str, str, int]] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        unique = len(self.by_insert_id)
        return {
            "first_accepted_at": self.first_at,
            "last_accepted_at": self.last_at,
            "requests": self.requests,
            "events_accepted": self.accepted,
            "unique_insert_ids": unique,
            "duplicates": self.accepted - unique,
            "silently_dropped": len(self.silently_dropped),
            "responses": {str(k): v for k, v in sorted(self.responses.items())},
        }


def _counted_as(event: dict[str, Any]) -> tuple[str, int | None, str]:
    """Where the Dashboard API counts an event: its type, its minute, $source."""
    time_ms = event.get("time")
    minute = time_ms // 60_000 if isinstance(time_ms, int) else None
    props = event.get("event_properties")
    source = props.get("$source") if isinstance(props, dict) else None
    return str(event.get("event_type")), minute, str(source)


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _valid_id(value: Any, min_length: int) -> bool | None:
    """True valid, False too short, None absent or not a usable id."""
    if not isinstance(value, str) or value.strip().casefold() in INVALID_IDS:
        return None
    return len(value) >= min_length


class AmplitudeService:
    def __init__(
        self,
        api_keys: set[str] | None = None,
        faults: Faults | None = None,
        keep_events: bool = True,
        secret_key: str | None = None,
        timezone: str = "UTC",
    ) -> None:
        """``api_keys``: keys that are accepted; None accepts any non-empty key. ``secret_key``: the Dashboard
        API's password for every key; None accepts any non-empty one. ``timezone``: the project's (IANA name):
        the Dashboard API counts days in it."""
        self.api_keys = api_keys
        self.secret_key = secret_key
        self.zone = ZoneInfo(timezone)
        self.faults = faults or Faults()
        self.recorder = Recorder(keep_events=keep_events)
        self.lock = threading.Lock()
        self.cohorts = LocalCohorts(self._dashboard_auth)
        self.taxonomy = LocalTaxonomy(self._dashboard_auth)
        self.app = Starlette(
            routes=[
                *self.cohorts.routes(),
                *self.taxonomy.routes(),
                Route("/2/httpapi", self._ingest, methods=["POST"]),
                Route("/batch", self._ingest, methods=["POST"]),
                Route("/api/2/events/segmentation", self._segmentation, methods=["GET"]),
                Route("/_local/stats", self._stats, methods=["GET"]),
                Route("/_local/events", self._events, methods=["GET"]),
                Route("/_local/arrivals", self._arrivals, methods=["GET"]),
                Route("/_local/faults", self._set_faults, methods=["POST"]),
                Route("/_local/reset", self._reset, methods=["POST"]),
            ]
        )

    def _answer(self, status: int, body: dict[str, Any]) -> Response:
        with self.lock:
            self.recorder.responses[status] += 1
        return _json(status, body)

    async def _ingest(self, request: Request) -> Response:
        limits: ApiLimits = LIMITS[PATHS[request.url.path]]
        with self.lock:
            self.recorder.requests += 1
        if (injected := await self._injected_fault()) is not None:
            return injected
        raw = await request.body()
        read = self._read(raw, limits)
        if isinstance(read, Response):
            return read
        events, min_length = read
        judged = _EventChecks(self.faults, min_length)
        for index, event in enumerate(events):
            judged.check(index, event)
        if (refusal := judged.refusal()) is not None:
            return self._answer(*refusal)
        self._record(events)
        return self._answer(
            200,
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": len(raw),
                "server_upload_time": int(time.time() * 1000),
            },
        )

    async def _injected_fault(self) -> Response | None:
        """Latency, timeouts, outages and error rates, as configured; None to answer normally."""
        faults = self.faults
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        if faults.timeout_rate and random.random() < faults.timeout_rate:
            await asyncio.sleep(faults.timeout_s)
            return self._answer(504, {"code": 504, "error": "Gateway timeout"})
        if time.time() < faults.outage_until:
            status = faults.outage_status
            return self._answer(status, {"code": status, "error": "Service unavailable"})
        for status, rate in faults.error_rates.items():
            if random.random() < rate:
                return self._answer(status, {"code": status, "error": "Internal server error"})
        return None

    def _read(self, raw: bytes, limits: ApiLimits) -> tuple[list[Any], int] | Response:
        """The request's events and its ``min_id_length``, or the answer refusing the request as a whole."""
        # HTTP V2: under 1 MB; Batch: 20 MB.
        if len(raw) > limits.max_body_bytes:
            return self._answer(413, {"code": 413, "error": "Payload too large"})
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self._answer(400, {"code": 400, "error": "Invalid JSON request body"})
        if not isinstance(body, dict):
            return self._answer(400, {"code": 400, "error": "Invalid request body"})
        missing = {"code": 400, "error": "Request missing required field"}
        api_key = body.get("api_key")
        if not isinstance(api_key, str) or not api_key:
            return self._answer(400, {**missing, "missing_field": "api_key"})
        if self.faults.invalid_key or (self.api_keys is not None and api_key not in self.api_keys):
            return self._answer(400, {"code": 400, "error": "Invalid API key: (masked)"})
        events = body.get("events")
        if not isinstance(events, list) or not events:
            return self._answer(400, {**missing, "missing_field": "events"})
        if len(events) > limits.max_events:
            return self._answer(413, {"code": 413, "error": "Payload too large"})
        options = body.get("options")
        min_length = options.get("min_id_length", DEFAULT_MIN_ID_LENGTH) if isinstance(options, dict) else None
        return events, DEFAULT_MIN_ID_LENGTH if min_length is None else min_length

    def _record(self, events: list[Any]) -> None:
        """Accepted: counted, kept unless a silent-drop fault loses them (what reconciliation must find)."""
        faults = self.faults
        with self.lock:
            recorder = self.recorder
            recorder.accepted += len(events)
            now = time.time()
            recorder.first_at = recorder.first_at or now
            recorder.last_at = now
            kept = events
            if faults.drop_silently_rate:
                kept = []
                for event in events:
                    if random.random() < faults.drop_silently_rate:
                        recorder.silently_dropped.append(
                            (str(event.get("insert_id")), str(event.get("event_type")), int(event.get("time") or 0))
                        )
                    else:
                        kept.append(event)
            for event in kept:
                insert_id = str(event.get("insert_id"))
                if insert_id not in recorder.by_insert_id:
                    recorder.counted[_counted_as(event)] += 1
                recorder.by_insert_id[insert_id] += 1
                recorder.first_accepted_at.setdefault(insert_id, now)
            if recorder.keep_events:
                recorder.events.extend(kept)

    async def _segmentation(self, request: Request) -> Response:
        """The Dashboard REST API's Event Segmentation, as far as reconciliation asks it: totals per day of one
        event type, optionally filtered on one event property (``$source``), from the unique insert_ids kept."""
        problem = self._dashboard_auth(request.headers.get("authorization", ""))
        if problem is not None:
            return problem
        params = request.query_params
        try:
            query = orjson.loads(params.get("e", ""))
            event_type = query["event_type"]
            filters = query.get("filters") or []
            start = datetime.strptime(params["start"], "%Y%m%d")
            end = datetime.strptime(params["end"], "%Y%m%d")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return _json(400, {"error": f"invalid segmentation query: {exc}"})
        if params.get("m", "totals") != "totals" or params.get("i", "1") != "1":
            return _json(400, {"error": "the local service answers m=totals with i=1 (daily) only"})
        sources: set[str] | None = None
        for item in filters:
            if item.get("subprop_key") != "$source" or item.get("subprop_op", "is") != "is":
                return _json(400, {"error": "the local service filters on the event property $source only"})
            sources = {str(v) for v in item.get("subprop_value") or []}
        if end < start or (end - start).days > 366:
            return _json(400, {"error": "end must be on or after start, within a year"})
        days = [(start + timedelta(days=n)).strftime("%Y%m%d") for n in range((end - start).days + 1)]
        by_day: Counter[str] = Counter()
        with self.lock:
            for (kind, minute, source), n in self.recorder.counted.items():
                if kind == event_type and minute is not None and (sources is None or source in sources):
                    by_day[datetime.fromtimestamp(minute * 60, self.zone).strftime("%Y%m%d")] += n
        series = [by_day[day] for day in days]
        x_values = [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in days]
        return _json(
            200,
            {
                "data": {
                    "series": [series],
                    "seriesLabels": [0],
                    "seriesCollapsed": [[{"setId": "", "value": sum(series)}]],
                    "xValues": x_values,
                }
            },
        )

    def _dashboard_auth(self, header: str) -> Response | None:
        scheme, _, encoded = header.partition(" ")
        try:
            key, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            key, sep, secret = "", "", ""
        if scheme.lower() != "basic" or not (key and sep and secret):
            return _json(401, {"error": "Invalid credentials: HTTP Basic with api_key:secret_key is required"})
        if (self.api_keys is not None and key not in self.api_keys) or (
            self.secret_key is not None and not hmac.compare_digest(secret, self.secret_key)
        ):
            return _json(401, {"error": "Invalid API key or secret key"})
        return None

    async def _stats(self, request: Request) -> Response:
        with self.lock:
            return _json(200, self.recorder.stats())

    async def _events(self, request: Request) -> Response:
        with self.lock:
            return _json(200, {"events": list(self.recorder.events)})

    async def _arrivals(self, request: Request) -> Response:
        """insert_id -> when it was first accepted (epoch seconds): end-to-end latency for benchmarks."""
        with self.lock:
            return _json(200, dict(self.recorder.first_accepted_at))

    async def _set_faults(self, request: Request) -> Response:
        try:
            data = orjson.loads(await request.body())
            faults = Faults.from_dict(data)
            if "outage_s" in data:
                faults.outage_until = time.time() + float(data["outage_s"])
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            return _json(400, {"error": str(exc)})
        self.faults = faults
        return _json(200, {"ok": True})

    async def _reset(self, request: Request) -> Response:
        with self.lock:
            self.recorder = Recorder(keep_events=self.recorder.keep_events)
        return _json(200, {"ok": True})


class ServiceThread:
    """Runs an ASGI app under uvicorn in a background thread on a loopback port (tests, demo, bench)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="auto")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="local-service")

    def start(self, timeout_s: float = 10.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the local service did not start")
            time.sleep(0.02)
        sockets = self._server.servers[0].sockets
        host, port = sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class _EventChecks:
    """Amplitude's per-event verdicts on one request: 400 naming events (fields), then 429 (throttles, quotas)."""

    def __init__(self, faults: Faults, min_length: int) -> None:
        self._faults = faults
        self._min_length = min_length
        self.invalid_fields: dict[str, list[int]] = {}
        self.missing_fields: dict[str, list[int]] = {}
        self.bad_id_lengths: dict[str, list[int]] = {}
        self.throttled_users: Counter[str] = Counter()
        self.throttled_devices: Counter[str] = Counter()
        self.quota_users: Counter[str] = Counter()
        self.quota_devices: Counter[str] = Counter()
        self.throttled_events: list[int] = []

    def check(self, index: int, event: Any) -> None:
        if not isinstance(event, dict):
            self.invalid_fields.setdefault("event", []).append(index)
            return
        if not isinstance(event.get("event_type"), str) or not event["event_type"]:
            self.missing_fields.setdefault("event_type", []).append(index)
        user_ok = _valid_id(event.get("user_id"), self._min_length)
        device_ok = _valid_id(event.get("device_id"), self._min_length)
        if user_ok is None and device_ok is None:
            self.missing_fields.setdefault("user_id", []).append(index)
        if user_ok is False:
            self.bad_id_lengths.setdefault("user_id", []).append(index)
        if device_ok is False:
            self.bad_id_lengths.setdefault("device_id", []).append(index)
        if "time" in event and (not isinstance(event["time"], int) or isinstance(event["time"], bool)):
            self.invalid_fields.setdefault("time", []).append(index)
        if event.get("insert_id") in self._faults.invalid_insert_ids:
            self.invalid_fields.setdefault("event_properties", []).append(index)
        self._throttle(index, event.get("user_id"), event.get("device_id"))

    def _throttle(self, index: int, user: Any, device: Any) -> None:
        faults = self._faults
        for held, by_id, found in (
            (faults.quota_users, self.quota_users, user),
            (faults.quota_devices, self.quota_devices, device),
            (faults.throttled_users, self.throttled_users, user),
            (faults.throttled_devices, self.throttled_devices, device),
        ):
            if found in held:
                by_id[found] += 1
                self.throttled_events.append(index)
                return

    def refusal(self) -> tuple[int, dict[str, Any]] | None:
        if self.invalid_fields or self.missing_fields or self.bad_id_lengths:
            answer: dict[str, Any] = {"code": 400, "error": "Request missing required field"}
            for key, found in (
                ("events_with_invalid_fields", self.invalid_fields),
                ("events_with_missing_fields", self.missing_fields),
                ("events_with_invalid_id_lengths", self.bad_id_lengths),
            ):
                if found:
                    answer[key] = found
            return 400, answer
        if not self.throttled_events:
            return None
        return 429, {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": 30,
            "throttled_devices": dict(self.throttled_devices),
            "throttled_users": dict(self.throttled_users),
            "throttled_events": self.throttled_events,
            "exceeded_daily_quota_users": dict(self.quota_users),
            "exceeded_daily_quota_devices": dict(self.quota_devices),
        }
