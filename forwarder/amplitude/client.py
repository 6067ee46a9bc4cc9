"""POST a batch to Amplitude and say what happened to each event, without deciding what to do about it.

The delivery policy (retry, split, dead-letter, wait) lives in ``forwarder.amplitude.delivery``; this module only
maps Amplitude's documented responses (shared/spec/amplitude-api.md, "Responses") onto typed results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import orjson
from pydantic import SecretStr, ValidationError

from forwarder.amplitude.encoding import BodyBuilder
from schemas.amplitude import InvalidRequestResponse, ThrottledResponse

RESPONSE_EXCERPT_CHARS = 500
# HTTP V2 docs: a throttled user or device should wait 30 s before its events are sent again.
THROTTLE_PAUSE_S = 30.0


@dataclass(frozen=True, slots=True)
class Answer:
    """What Amplitude answered: its status (None: it did not answer) and the start of its body."""

    status: int | None
    excerpt: str = ""


class Accepted(Answer):
    __slots__ = ()


class BadRequest(Answer):
    """400 naming no event: the request as a whole was refused; splitting finds the culprit."""

    __slots__ = ()


class InvalidKey(Answer):
    """Fatal configuration: nothing may be acknowledged past this point."""

    __slots__ = ()


class TooLarge(Answer):
    """413: splitting makes the requests small enough."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Rejected(Answer):
    """400 naming events: those are rejected for good (index -> reason); the rest must be re-sent."""

    reasons: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Throttled(Answer):
    throttled: frozenset[int] = frozenset()
    # Amplitude reports daily quotas per id; events of these ids will not be accepted today.
    quota_users: frozenset[str] = frozenset()
    quota_devices: frozenset[str] = frozenset()
    pause_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Unavailable(Answer):
    """Transient: 5xx, 403 (firewall), a timeout or a connection error. May or may not have been ingested."""

    detail: str = ""


SendResult = Accepted | Rejected | BadRequest | InvalidKey | TooLarge | Throttled | Unavailable


# Told of every request: (HTTP status or error kind, seconds). Metrics hang off it.
RequestObserver = Callable[[str, float], None]


def _ignore(_label: str, _seconds: float) -> None:
    return None


def _excerpt(response: httpx.Response) -> str:
    return response.text[:RESPONSE_EXCERPT_CHARS]


def _indexes(groups: dict[str, list[int]], label: str, into: dict[int, str]) -> None:
    for name, indexes in groups.items():
        for index in indexes:
            into.setdefault(index, f"{label}:{name}")


def classify(response: httpx.Response, batch_size: int) -> SendResult:
    status = response.status_code
    if 200 <= status < 300:
        return Accepted(status)
    if status == 413:
        return TooLarge(status)
    if status == 429:
        try:
            throttled = ThrottledResponse.model_validate(orjson.loads(response.content))
        except (orjson.JSONDecodeError, ValidationError):
            return Unavailable(status, _excerpt(response), detail="429 with an unreadable body")
        listed = frozenset(i for i in throttled.throttled_events if 0 <= i < batch_size)
        return Throttled(
            status,
            _excerpt(response),
            # No index listed: the whole request waits, the safe reading.
            throttled=listed or frozenset(range(batch_size)),
            quota_users=frozenset(throttled.exceeded_daily_quota_users),
            quota_devices=frozenset(throttled.exceeded_daily_quota_devices),
            pause_s=THROTTLE_PAUSE_S,
        )
    if status == 400:
        try:
            body = InvalidRequestResponse.model_validate(orjson.loads(response.content))
        except (orjson.JSONDecodeError, ValidationError):
            return BadRequest(status, _excerpt(response))
        if body.error.lower().startswith("invalid api key") or body.missing_field == "api_key":
            return InvalidKey(status, _excerpt(response))
        reasons: dict[int, str] = {}
        _indexes(body.events_with_invalid_fields, "invalid_field", reasons)
        _indexes(body.events_with_missing_fields, "missing_field", reasons)
        _indexes(body.events_with_invalid_id_lengths, "invalid_id_length", reasons)
        for index in body.silenced_events:
            reasons.setdefault(index, "silenced")
        reasons = {i: r for i, r in reasons.items() if 0 <= i < batch_size}
        if reasons:
            return Rejected(status, _excerpt(response), reasons=reasons)
        return BadRequest(status, _excerpt(response))
    return Unavailable(status, _excerpt(response), detail=f"HTTP {status}")


class AmplitudeClient:
    """One connection pool to one Amplitude endpoint; the API key never leaves the request body."""

    def __init__(
        self,
        endpoint: str,
        api_key: SecretStr,
        *,
        timeout_s: float = 10.0,
        min_id_length: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._builder = BodyBuilder(api_key.get_secret_value(), min_id_length)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            transport=transport,
            headers={"Content-Type": "application/json", "Accept": "*/*"},
        )
        self._observe = observer or _ignore

    @property
    def body_overhead(self) -> int:
        return self._builder.overhead

    async def send(self, encoded_events: Sequence[bytes]) -> SendResult:
        body = self._builder.body(encoded_events)
        started = time.perf_counter()
        try:
            response = await self._http.post(self.endpoint, content=body)
        except httpx.TimeoutException as exc:
            self._observe("timeout", time.perf_counter() - started)
            return Unavailable(None, detail=f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            self._observe("connection_error", time.perf_counter() - started)
            return Unavailable(None, detail=f"connection error: {type(exc).__name__}")
        self._observe(str(response.status_code), time.perf_counter() - started)
        return classify(response, len(encoded_events))

    async def aclose(self) -> None:
        await self._http.aclose()
