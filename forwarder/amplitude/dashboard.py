"""Amplitude's Dashboard REST API (Event Segmentation for the report, Behavioral Cohorts for the cohort pulls):
one client, one retry policy, one error.

HTTP Basic ``api_key:secret_key``. Amplitude runs at most 5 Dashboard requests of a project at once (all endpoints
together), so at most 4 go out from here. 429, 5xx and no answer are retried, waiting 2 s, then twice as long up to
60 s; 401/403 end at once with a line that names the settings, never their values.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable

import httpx
from pydantic import SecretStr

log = logging.getLogger("forwarder.amplitude")

MAX_CONCURRENT = 4
ATTEMPTS = 8
REDIRECTS = (301, 302, 303, 307, 308)


class DashboardError(RuntimeError):
    """The Dashboard API could not answer: one line, without the credentials."""


class DashboardAPI:
    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        secret_key: SecretStr,
        *,
        timeout_s: float = 60.0,
        attempts: int = ATTEMPTS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        auth = httpx.BasicAuth(api_key.get_secret_value(), secret_key.get_secret_value())
        self._api = httpx.AsyncClient(base_url=base_url, auth=auth, timeout=timeout_s, transport=transport)
        # Downloads from a redirect target: its own client, so the Basic credentials cannot go along.
        self._files = httpx.AsyncClient(timeout=timeout_s, transport=transport)
        self._gate = asyncio.Semaphore(MAX_CONCURRENT)
        self._attempts = attempts
        self.sleep = sleep

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._files.aclose()

    async def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        """The first answer that retrying cannot change (redirects are not followed)."""
        return await self.request("GET", path, params=params)

    async def request(
        self, method: str, path: str, params: dict[str, str] | None = None, form: dict[str, str] | None = None
    ) -> httpx.Response:
        """``get`` for any method; ``form``: a form-encoded body (the Taxonomy API's writes)."""
        backoff = 2.0
        problem = "no answer"
        for _ in range(self._attempts):
            try:
                async with self._gate:
                    response = await self._api.request(method, path, params=params, data=form, follow_redirects=False)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if response.status_code in (401, 403):
                    raise DashboardError(
                        "the Amplitude Dashboard API refused AMPLITUDE_API_KEY / AMPLITUDE_SECRET_KEY "
                        f"(HTTP {response.status_code})"
                    )
                if response.status_code != 429 and response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}"
            log.warning(
                "the Amplitude Dashboard API failed; retrying", extra={"fields": {"path": path, "error": problem}}
            )
            await self.sleep(backoff)
            backoff = min(backoff * 2, 60.0)
        if problem == "HTTP 429":
            raise DashboardError(
                f"the Amplitude Dashboard API kept answering 429 on {path}: the project's rate limit; try again later"
            )
        raise DashboardError(f"the Amplitude Dashboard API kept failing on {path} ({problem})")

    async def download(self, response: httpx.Response, into: io.BufferedWriter, what: str) -> int:
        """The file an answer holds or redirects to, written to ``into``; returns how many bytes."""
        if response.status_code in REDIRECTS:
            location = str(response.url.join(response.headers.get("location", "")))
            async with self._files.stream("GET", location) as stream:
                if stream.status_code != 200:
                    raise DashboardError(f"{what}: the file was answered {stream.status_code}")
                size = 0
                async for chunk in stream.aiter_bytes():
                    into.write(chunk)
                    size += len(chunk)
                return size
        if response.status_code != 200:
            raise DashboardError(f"{what}: the file was answered {response.status_code}")
        into.write(response.content)
        return len(response.content)
