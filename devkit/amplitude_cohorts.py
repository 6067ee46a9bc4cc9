"""The local Amplitude service's cohorts: the Behavioral Cohorts API and the Cohort Webhooks sender.

Behavioral Cohorts API (shared/spec/cohort-sync.md, "Amplitude side"), HTTP Basic ``api_key:secret_key``:
``GET /api/3/cohorts``; ``GET /api/5/cohorts/request/{id}?props=1&propKeys=...`` (202 and a request id);
``GET /api/5/cohorts/request-status/{request_id}`` (202 until ready, then 200);
``GET /api/5/cohorts/request/{request_id}/file``: a 302 to a link that lives a minute, as object storage's does.
The link refuses a request that carries an ``Authorization`` header (400), so a client that sends Amplitude's
credentials to the storage host is caught. The file is a gzip CSV: ``amplitude_id``, ``user_id``, the properties.

Webhook sender: a cohort defined with a ``webhook`` (``url``, ``headers``, ``duplicate_rate``) posts who entered
and who left, in batches of 1,000, each time its membership changes (``POST /_local/cohorts`` with new members,
``POST /_local/cohorts/{id}/churn`` with ``{"leave": n, "join": m}``, or on its own every ``churn_every_s``), the
first sync sending everyone, as Amplitude does. A share of deliveries is sent twice (a retry after a timeout).

Local paths: ``POST /_local/cohorts`` (define or replace), ``POST /_local/cohorts/{id}/churn``,
``GET /_local/cohorts/{id}`` (members and webhook deliveries).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import itertools
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

log = logging.getLogger("devkit")

WEBHOOK_BATCH = 1000
LINK_LIFETIME_S = 60.0
Auth = Callable[[str], Response | None]


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@dataclass
class Webhook:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    duplicate_rate: float = 0.0


@dataclass
class LocalCohort:
    cohort_id: str
    name: str
    # user_id (or the amplitude id of an anonymous user) -> (user_id, user properties)
    members: dict[str, tuple[str | None, dict[str, Any]]]
    last_computed_ms: int
    webhook: Webhook | None = None
    synced: bool = False
    churn_every_s: float = 0.0
    deliveries: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Export:
    cohort_id: str
    ready_at: float
    content: bytes
    token: str = ""
    link_expires: float = 0.0


def _members(rows: Any) -> dict[str, tuple[str | None, dict[str, Any]]]:
    out: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for index, row in enumerate(rows or []):
        user_id = row.get("user_id") or None
        properties = dict(row.get("user_properties") or {})
        out[str(user_id) if user_id else f"amplitude-{row.get('amplitude_id', index)}"] = (user_id, properties)
    return out


def export_csv(cohort: LocalCohort, prop_keys: list[str]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["amplitude_id", "user_id", *prop_keys])
    for index, (key, (user_id, properties)) in enumerate(cohort.members.items()):
        amplitude_id = key.removeprefix("amplitude-") if user_id is None else str(10_000_000 + index)
        writer.writerow([amplitude_id, user_id or "", *(properties.get(p, "") for p in prop_keys)])
    return gzip.compress(text.getvalue().encode(), compresslevel=1)


class LocalCohorts:
    def __init__(self, auth: Auth, export_delay_s: float = 0.2) -> None:
        self._auth = auth
        self.export_delay_s = export_delay_s
        self.cohorts: dict[str, LocalCohort] = {}
        self.exports: dict[str, Export] = {}
        self.export_requests = 0
        self.file_requests_with_credentials = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._joined = itertools.count()

    def routes(self) -> list[Route]:
        return [
            Route("/api/3/cohorts", self._list, methods=["GET"]),
            Route("/api/5/cohorts/request/{cohort_id}", self._request, methods=["GET"]),
            Route("/api/5/cohorts/request-status/{request_id}", self._status, methods=["GET"]),
            Route("/api/5/cohorts/request/{request_id}/file", self._file, methods=["GET"]),
            Route("/_local/cohort-files/{token}", self._download, methods=["GET"]),
            Route("/_local/cohorts", self._define, methods=["POST"]),
            Route("/_local/cohorts/{cohort_id}", self._show, methods=["GET"]),
            Route("/_local/cohorts/{cohort_id}/churn", self._churn, methods=["POST"]),
        ]

    async def _list(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        return _json(
            200,
            {
                "cohorts": [
                    {
                        "id": c.cohort_id,
                        "name": c.name,
                        "size": len(c.members),
                        "lastComputed": c.last_computed_ms,
                        "lastMod": c.last_computed_ms,
                        "archived": False,
                    }
                    for c in self.cohorts.values()
                ]
            },
        )

    async def _request(self, request: Request) -> Response:
        cohort = self.cohorts.get(request.path_params["cohort_id"])
        if (refused := self._refused(request)) is not None or cohort is None:
            return refused or _json(404, {"error": "cohort not found"})
        prop_keys = [p for p in request.query_params.get("propKeys", "").split(",") if p]
        request_id = uuid.uuid4().hex
        content = export_csv(cohort, prop_keys if request.query_params.get("props") == "1" else [])
        self.exports[request_id] = Export(cohort.cohort_id, time.monotonic() + self.export_delay_s, content)
        self.export_requests += 1
        return _json(202, {"request_id": request_id, "cohort_id": cohort.cohort_id})

    def _refused(self, request: Request) -> Response | None:
        return self._auth(request.headers.get("authorization", ""))

    async def _status(self, request: Request) -> Response:
        export = self.exports.get(request.path_params["request_id"])
        if (refused := self._refused(request)) is not None or export is None:
            return refused or _json(404, {"error": "request not found"})
        ready = time.monotonic() >= export.ready_at
        return _json(
            200 if ready else 202,
            {
                "request_id": request.path_params["request_id"],
                "async_status": "JOB COMPLETED" if ready else "JOB INPROGRESS",
            },
        )

    async def _file(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        export = self.exports.get(request.path_params["request_id"])
        if export is None or time.monotonic() < export.ready_at:
            return _json(404, {"error": "the export is not ready"})
        export.token = secrets.token_urlsafe(16)
        export.link_expires = time.monotonic() + LINK_LIFETIME_S
        return RedirectResponse(str(request.url_for("_download", token=export.token)), status_code=302)

    async def _download(self, request: Request) -> Response:
        if "authorization" in request.headers:
            self.file_requests_with_credentials += 1
            return _json(400, {"error": "Only one auth mechanism allowed"})
        token = request.path_params["token"]
        export = next((e for e in self.exports.values() if e.token and e.token == token), None)
        if export is None or time.monotonic() > export.link_expires:
            return _json(403, {"error": "Request has expired"})
        return Response(export.content, media_type="application/octet-stream")

    async def _define(self, request: Request) -> Response:
        try:
            data = orjson.loads(await request.body())
            cohort_id = str(data.get("id") or f"local{next(self._ids)}")
            members = _members(data.get("members"))
            hook = data.get("webhook")
            webhook = (
                Webhook(str(hook["url"]), dict(hook.get("headers") or {}), float(hook.get("duplicate_rate") or 0))
                if hook
                else None
            )
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            return _json(400, {"error": f"invalid cohort: {exc}"})
        existing = self.cohorts.get(cohort_id)
        if existing is None:
            cohort = LocalCohort(cohort_id, str(data.get("name") or cohort_id), {}, 0, webhook)
            self.cohorts[cohort_id] = cohort
        else:
            cohort = existing
            cohort.name = str(data.get("name") or cohort.name)
            cohort.webhook = webhook or cohort.webhook
        cohort.churn_every_s = float(data.get("churn_every_s") or 0)
        self._change(cohort, members)
        if cohort.churn_every_s:
            self._spawn(self._churn_forever(cohort))
        return _json(200, {"id": cohort_id, "size": len(cohort.members)})

    async def _show(self, request: Request) -> Response:
        cohort = self.cohorts.get(request.path_params["cohort_id"])
        if cohort is None:
            return _json(404, {"error": "cohort not found"})
        return _json(
            200,
            {
                "id": cohort.cohort_id,
                "name": cohort.name,
                "members": [{"user_id": u, "user_properties": p} for u, p in cohort.members.values()],
                "deliveries": cohort.deliveries,
                "export_requests": self.export_requests,
                "file_requests_with_credentials": self.file_requests_with_credentials,
            },
        )

    async def _churn(self, request: Request) -> Response:
        cohort = self.cohorts.get(request.path_params["cohort_id"])
        if cohort is None:
            return _json(404, {"error": "cohort not found"})
        try:
            data = orjson.loads(await request.body() or b"{}")
            leave, join = int(data.get("leave", 0)), int(data.get("join", 0))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
            return _json(400, {"error": f"invalid churn: {exc}"})
        left, joined = self.churn(cohort, leave, join)
        return _json(200, {"left": left, "joined": joined, "size": len(cohort.members)})

    def churn(self, cohort: LocalCohort, leave: int, join: int) -> tuple[list[str], list[str]]:
        """``leave`` members chosen at random leave, ``join`` new users enter (``joined-0``, ``joined-1``, ...: a
        demo can tell MoEngage about some of them first)."""
        members = dict(cohort.members)
        leaving = random.sample(sorted(members), min(leave, len(members)))
        for key in leaving:
            del members[key]
        joining = [f"joined-{next(self._joined)}" for _ in range(join)]
        for user_id in joining:
            members[user_id] = (user_id, {})
        self._change(cohort, members)
        return leaving, joining

    def _change(self, cohort: LocalCohort, members: dict[str, tuple[str | None, dict[str, Any]]]) -> None:
        entered = [members[k] for k in members if k not in cohort.members or not cohort.synced]
        left = [cohort.members[k] for k in cohort.members if k not in members] if cohort.synced else []
        cohort.members = members
        cohort.last_computed_ms = int(time.time() * 1000)
        if cohort.webhook is not None:
            cohort.synced = True
            self._spawn(self._post_changes(cohort, cohort.webhook, entered, left, cohort.last_computed_ms))

    def _spawn(self, coroutine: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:  # no loop (a direct call in a test): nothing can be posted
            coroutine.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _churn_forever(self, cohort: LocalCohort) -> None:
        while cohort.churn_every_s and self.cohorts.get(cohort.cohort_id) is cohort:
            await asyncio.sleep(cohort.churn_every_s)
            size = len(cohort.members)
            self.churn(cohort, max(1, size // 20), max(1, size // 25))

    async def _post_changes(
        self,
        cohort: LocalCohort,
        webhook: Webhook,
        entered: list[tuple[str | None, dict[str, Any]]],
        left: list[tuple[str | None, dict[str, Any]]],
        computed_ms: int,
    ) -> None:
        computed = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(computed_ms / 1000)) + f".{computed_ms % 1000:03d}Z"
        async with httpx.AsyncClient(timeout=10) as client:
            for in_cohort, users in ((True, entered), (False, left)):
                kind = "enter" if in_cohort else "exit"
                for index in range(0, len(users), WEBHOOK_BATCH):
                    batch = users[index : index + WEBHOOK_BATCH]
                    body = orjson.dumps(
                        {
                            "cohort_name": cohort.name,
                            "cohort_id": cohort.cohort_id,
                            "in_cohort": in_cohort,
                            "computed_time": computed,
                            "message_id": f"{uuid.uuid4()}::{kind}::{index // WEBHOOK_BATCH}",
                            "users": [{"user_id": u, "user_properties": p} for u, p in batch],
                        }
                    )
                    copies = 2 if random.random() < webhook.duplicate_rate else 1
                    for _ in range(copies):
                        await self._deliver(client, cohort, webhook, body, len(batch))

    async def _deliver(
        self, client: httpx.AsyncClient, cohort: LocalCohort, webhook: Webhook, body: bytes, users: int
    ) -> None:
        """As Amplitude: retried with backoff (1 s, doubling) about 8 times, then given up."""
        headers = {"Content-Type": "application/json", "User-Agent": "Amplitude/Webhook/1.0", **webhook.headers}
        status: int | str = "not sent"
        for attempt in range(8):
            try:
                status = (await client.post(webhook.url, content=body, headers=headers)).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            if status == 200:
                break
            await asyncio.sleep(min(2.0**attempt, 120.0))
        cohort.deliveries.append({"users": users, "status": status, "at": time.time()})
