"""The local Amplitude service's Taxonomy API, as far as ``forwarder taxonomy`` uses it: the project's event
types (category, description, active or not), listed, created and updated with HTTP Basic api_key:secret_key
and form-encoded bodies; ``/_local/taxonomy`` shows them."""

from __future__ import annotations

import urllib.parse
from dataclasses import asdict, dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devkit.amplitude_cohorts import Auth, _json


@dataclass
class LocalEventType:
    event_type: str
    category: str = ""
    description: str = ""
    is_active: bool = True


class LocalTaxonomy:
    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self.event_types: dict[str, LocalEventType] = {}
        self.writes = 0

    def routes(self) -> list[Route]:
        return [
            Route("/api/2/taxonomy/event", self._list, methods=["GET"]),
            Route("/api/2/taxonomy/event", self._create, methods=["POST"]),
            Route("/api/2/taxonomy/event/{event_type:path}", self._update, methods=["PUT"]),
            Route("/_local/taxonomy", self._show, methods=["GET"]),
        ]

    def _refused(self, request: Request) -> Response | None:
        return self._auth(request.headers.get("authorization", ""))

    async def _list(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        data = [
            {
                "event_type": e.event_type,
                "category": {"name": e.category} if e.category else None,
                "description": e.description or None,
                "is_active": e.is_active,
            }
            for e in self.event_types.values()
        ]
        return _json(200, {"success": True, "data": data})

    async def _form(self, request: Request) -> dict[str, str]:
        parsed = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[-1] for key, values in parsed.items()}

    async def _create(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        form = await self._form(request)
        name = form.get("event_type", "").strip()
        if not name:
            return _json(400, {"success": False, "errors": [{"message": "event_type is required"}]})
        if name in self.event_types:
            return _json(409, {"success": False, "errors": [{"message": f"event type {name!r} already exists"}]})
        self.event_types[name] = LocalEventType(name, form.get("category", ""), form.get("description", ""))
        self.writes += 1
        return _json(200, {"success": True})

    async def _update(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        name = urllib.parse.unquote(request.path_params["event_type"])
        existing = self.event_types.get(name)
        if existing is None:
            return _json(404, {"success": False, "errors": [{"message": f"no event type {name!r}"}]})
        form = await self._form(request)
        if "is_active" in form and form["is_active"] not in ("true", "false"):
            return _json(400, {"success": False, "errors": [{"message": "is_active must be true or false"}]})
        existing.category = form.get("category", existing.category)
        existing.description = form.get("description", existing.description)
        existing.is_active = form.get("is_active", "true" if existing.is_active else "false") == "true"
        self.writes += 1
        return _json(200, {"success": True})

    async def _show(self, request: Request) -> Response:
        return _json(200, {"event_types": [asdict(e) for e in self.event_types.values()]})
