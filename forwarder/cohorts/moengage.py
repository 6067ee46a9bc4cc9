"""Send Cohort Sync requests to MoEngage until each has a final answer.

``POST /v1/integrations/cohortsync`` with HTTP Basic ``workspace_id:data_api_key`` and ``MOE-APPKEY``
(shared/spec/cohort-sync.md). At most ``max_requests_per_minute`` requests leave per sliding minute (MoEngage
answers 429 above 300 a minute per workspace); a 429 waits for ``x-ratelimit-reset``; 5xx, timeouts and
connection errors are retried with backoff for as long as it takes (they delay, never lose). 400, 413 and 415
are final (``Refused``: the caller dead-letters the body with the answer); 401 and 403 mean the key or the
account is wrong, which no retry fixes (``MoEngageFatal``: the worker stops and acknowledges nothing more).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

log = logging.getLogger("forwarder.cohorts")

PATH = "/v1/integrations/cohortsync"
RESPONSE_EXCERPT_CHARS = 500
MAX_BACKOFF_S = 60.0
FATAL_STATUSES = frozenset({401, 403})
REFUSED_STATUSES = frozenset({400, 404, 413, 415, 422})


class MoEngageFatal(Exception):
    """The workspace id, the key or the account is refused: fix the setting and restart."""


@dataclass(frozen=True)
class Answer:
    status: int
    excerpt: str = ""
    attempts: int = 1

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class RateLimit:
    """At most ``per_minute`` starts in any 60 s."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                while self._starts and now - self._starts[0] >= 60.0:
                    self._starts.popleft()
                if len(self._starts) < self.per_minute:
                    self._starts.append(now)
                    return
                await sleep(60.0 - (now - self._starts[0]) + 0.001)

    def hold_for(self, seconds: float) -> None:
        """After a 429: count the window as full for ``seconds`` (the server's clock decides, not ours)."""
        now = self._clock()
        self._starts.clear()
        self._starts.extend([now - 60.0 + seconds] * self.per_minute)


def _reset_s(response: httpx.Response) -> float:
    value = response.headers.get("x-ratelimit-reset", "")
    try:
        seconds = float(value)
    except ValueError:
        return 1.0
    if seconds > 1e9:  # an epoch time rather than seconds to wait
        seconds -= time.time()
    return min(max(seconds, 0.5), 120.0)


class MoEngageClient:
    def __init__(
        self,
        base_url: str,
        workspace_id: str,
        data_api_key: SecretStr,
        *,
        max_requests_per_minute: int = 300,
        timeout_s: float = 10.0,
        observer: Callable[[str, float], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        token = base64.b64encode(f"{workspace_id}:{data_api_key.get_secret_value()}".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {token}",
            "MOE-APPKEY": workspace_id,
            "Content-Type": "application/json",
        }
        self._url = base_url.rstrip("/") + PATH
        self._http = httpx.AsyncClient(timeout=timeout_s, transport=transport)
        self.rate = RateLimit(max_requests_per_minute)
        self._observer = observer
        self._sleep = sleep

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, body: bytes) -> Answer:
        """The final answer for one body: 2xx or a refusal; raises ``MoEngageFatal`` for 401/403."""
        attempts = 0
        backoff = 1.0
        while True:
            attempts += 1
            await self.rate.acquire(self._sleep)
            started = time.monotonic()
            try:
                response = await self._http.post(self._url, content=body, headers=self._headers)
            except httpx.HTTPError as exc:  # timeouts, refused connections, broken streams: may or may not be applied
                self._observe("error", started)
                log.warning(
                    "MoEngage did not answer; retrying",
                    extra={"fields": {"error": type(exc).__name__, "attempt": attempts, "retry_in_s": backoff}},
                )
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            self._observe(str(response.status_code), started)
            status = response.status_code
            excerpt = response.text[:RESPONSE_EXCERPT_CHARS]
            if 200 <= status < 300:
                return Answer(status, excerpt, attempts)
            if status in FATAL_STATUSES:
                raise MoEngageFatal(
                    f"MoEngage answered {status}: check MOENGAGE_WORKSPACE_ID and MOENGAGE_DATA_API_KEY"
                )
            if status == 429:
                wait_s = _reset_s(response)
                self.rate.hold_for(wait_s)
                log.warning(
                    "MoEngage throttled the workspace; waiting for the reset",
                    extra={"fields": {"attempt": attempts, "reset_s": wait_s}},
                )
                continue
            if status in REFUSED_STATUSES:
                return Answer(status, excerpt, attempts)
            log.warning(
                "MoEngage failed; retrying",
                extra={"fields": {"status": status, "attempt": attempts, "retry_in_s": backoff}},
            )
            await self._sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _observe(self, status: str, started: float) -> None:
        if self._observer is not None:
            self._observer(status, time.monotonic() - started)
