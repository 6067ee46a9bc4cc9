"""``FORWARDER_ROUTES_FILE``: several MoEngage apps into several Amplitude projects.

A TOML file; each ``[routes.NAME]`` table names the ``app_names`` it takes (the Streams envelope's ``app_name``,
exact match) and may set any per-project setting; what it does not set comes from the environment settings. An
event no route takes goes to the route marked ``default = true``, else it is dead-lettered (``no_route``). Keys
stay out of the file: a route names the environment variable that holds its key (``amplitude_api_key_env``).
Without the file there is one route, ``default``, from the environment: everything behaves as before.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from forwarder.core.counting import DEFAULT_ROUTE
from forwarder.core.pii import PiiRules
from forwarder.core.pipeline import MappingRules
from forwarder.core.select import Selection
from forwarder.core.user_properties import UserPropertyRules
from forwarder.settings import AmplitudeSettings, ForwarderSettings, SettingsError

ROUTE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FILE_SETTING = "FORWARDER_ROUTES_FILE"


class RouteSpec(BaseModel):
    """One ``[routes.NAME]`` table, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    app_names: list[str] = Field(default_factory=list)
    default: bool = False
    amplitude_api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    residency: Literal["us", "eu"] | None = None
    api: Literal["http", "batch"] | None = None
    api_url: str | None = Field(None, pattern=r"^https?://")
    events: str | None = None
    min_id_length: int | None = Field(None, ge=1, le=1024)
    user_properties: str | None = None
    pii: str | None = None


@dataclass(frozen=True)
class Route:
    name: str
    app_names: tuple[str, ...]
    default: bool
    amplitude: AmplitudeSettings
    rules: MappingRules


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[Route, ...]
    # True when the routes come from a file (routes are then named in metrics, dead letters and the ledger).
    from_file: bool = False
    # ``--route NAME`` of a replay: the other routes' events are filtered (``other_route``), not sent.
    limit: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_app", {app: r for r in self.routes for app in r.app_names})
        object.__setattr__(self, "_by_name", {r.name: r for r in self.routes})
        object.__setattr__(self, "_default", next((r for r in self.routes if r.default), None))

    def named(self, name: str) -> Route | None:
        by_name: dict[str, Route] = self._by_name  # type: ignore[attr-defined]
        return by_name.get(name)

    def pick(self, header_route: str | None, app_name: object) -> Route | None:
        """The route a message takes: the one ingest wrote in its header, else its ``app_name``'s, else the
        default; None: no route takes it."""
        if header_route is not None:
            return self.named(header_route)
        by_app: dict[str, Route] = self._by_app  # type: ignore[attr-defined]
        default: Route | None = self._default  # type: ignore[attr-defined]
        if isinstance(app_name, str) and (route := by_app.get(app_name)) is not None:
            return route
        return default

    def with_rules(self, change: Callable[[MappingRules], MappingRules]) -> RouteTable:
        """Every route's rules changed alike (a replay's window and ``--events``)."""
        routes = tuple(replace(route, rules=change(route.rules)) for route in self.routes)
        return RouteTable(routes, self.from_file, self.limit)

    @property
    def default_rules(self) -> MappingRules:
        return self.routes[0].rules

    def choose(self, header_route: str | None, app_name: str | None) -> Route | tuple[str, str]:
        """``pick``, with a replay's ``--route`` applied: the route, or (why not: ``no_route`` / ``other_route``,
        the route to count it under)."""
        route = self.pick(header_route, app_name)
        if route is None:
            return "no_route", header_route or ""
        if self.limit is not None and route.name != self.limit:
            return "other_route", route.name
        return route

    def only(self, name: str | None) -> RouteTable:
        """Limited to one route (``--route``); ValueError names the unknown one."""
        if name is None:
            return self
        if self.named(name) is None:
            raise ValueError(f"no route named {name!r} (routes: {', '.join(r.name for r in self.routes)})")
        return RouteTable(self.routes, self.from_file, limit=name)


def _rules(settings: ForwarderSettings, spec: RouteSpec, replaying: bool) -> MappingRules:
    base = settings.mapping_rules(replaying=replaying)
    user_properties = base.user_properties
    if spec.user_properties is not None:
        user_properties = UserPropertyRules.parse(spec.user_properties)
        if replaying and user_properties is not None:
            user_properties = user_properties.for_replays()
    pii = base.pii
    if spec.pii is not None:
        pii = PiiRules.parse(spec.pii, settings.properties.pii_salt.get_secret_value())
    return replace(
        base,
        selection=Selection.parse(spec.events) if spec.events is not None else base.selection,
        min_id_length=spec.min_id_length or base.min_id_length,
        user_properties=user_properties,
        pii=pii,
    )


def _amplitude(
    settings: ForwarderSettings, name: str, spec: RouteSpec, environ: Mapping[str, str], need_key: bool
) -> AmplitudeSettings:
    base = settings.amplitude
    key = base.api_key
    if spec.amplitude_api_key_env is not None:
        value = environ.get(spec.amplitude_api_key_env, "").strip()
        if not value:
            raise ValueError(f"routes.{name}: the variable {spec.amplitude_api_key_env} (its key) is not set")
        key = SecretStr(value)
    elif key is None and need_key:
        raise ValueError(f"routes.{name}: no key: set amplitude_api_key_env, or AMPLITUDE_API_KEY")
    update: dict[str, object] = {"api_key": key}
    for field in ("residency", "api", "api_url", "min_id_length"):
        if (value := getattr(spec, field)) is not None:
            update[field] = value.rstrip("/") if field == "api_url" else value
    return base.model_copy(update=update)


def _problems(error: ValidationError, name: str) -> list[str]:
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "extra_forbidden":
            lines.append(f"routes.{name}: unknown key {where!r}")
        else:
            lines.append(f"routes.{name}.{where}: {problem['msg'].removeprefix('Value error, ')}")
    return lines


def _specs(text: str) -> dict[str, RouteSpec]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not TOML: {exc}") from None
    unknown = set(document) - {"routes"}
    if unknown:
        raise ValueError(f"unknown top-level key {sorted(unknown)[0]!r}: only [routes.NAME] tables")
    tables = document.get("routes")
    if not isinstance(tables, dict) or not tables:
        raise ValueError("no [routes.NAME] table")
    specs: dict[str, RouteSpec] = {}
    problems: list[str] = []
    for name, table in tables.items():
        if not ROUTE_NAME.match(name):
            problems.append(f"routes.{name}: a route name is letters, digits, '-' and '_' (at most 64)")
            continue
        if not isinstance(table, dict):
            problems.append(f"routes.{name}: must be a table")
            continue
        try:
            specs[name] = RouteSpec.model_validate(table)
        except ValidationError as exc:
            problems.extend(_problems(exc, name))
    if problems:
        raise ValueError("\n".join(problems))
    return specs


def _claims(specs: dict[str, RouteSpec]) -> list[str]:
    problems = []
    claimed: dict[str, str] = {}
    for name, spec in specs.items():
        for app in spec.app_names:
            if app in claimed:
                problems.append(f"routes.{name}: app_name {app!r} is already taken by routes.{claimed[app]}")
            claimed[app] = name
    defaults = [name for name, spec in specs.items() if spec.default]
    if len(defaults) > 1:
        problems.append(f"default = true on more than one route: {', '.join(defaults)}")
    return problems


def _file_error(text: str) -> SettingsError:
    return SettingsError("invalid settings:\n  " + "\n  ".join(f"{FILE_SETTING}: {line}" for line in text.splitlines()))


def load_routes(
    settings: ForwarderSettings, environ: Mapping[str, str], need_key: bool = True, replaying: bool = False
) -> RouteTable:
    """The routes of ``FORWARDER_ROUTES_FILE``, or the one ``default`` route of the environment. SettingsError:
    one line per problem, naming the route and the key, never a value of a key variable."""
    path = settings.worker.routes_file
    if path is None:
        spec = RouteSpec.model_validate({"default": True})
        amplitude = settings.amplitude
        return RouteTable((Route(DEFAULT_ROUTE, (), True, amplitude, _rules(settings, spec, replaying)),))
    try:
        with open(path, encoding="utf-8") as handle:
            specs = _specs(handle.read())
        problems = _claims(specs)
        routes = []
        for name, spec in specs.items():
            try:
                amplitude = _amplitude(settings, name, spec, environ, need_key)
                rules = _rules(settings, spec, replaying)
            except ValueError as exc:
                problems.append(str(exc) if str(exc).startswith("routes.") else f"routes.{name}: {exc}")
                continue
            routes.append(Route(name, tuple(spec.app_names), spec.default, amplitude, rules))
        if problems:
            raise ValueError("\n".join(problems))
    except OSError as exc:
        raise _file_error(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise _file_error(str(exc)) from None
    return RouteTable(tuple(routes), from_file=True)


def route_names(path: str | None) -> frozenset[str]:
    """The routes a file names (``forwarder ingest``: ``FORWARDER_INGEST_PATH/{route}``); the worker checks the
    rest of it. SettingsError as ``load_routes``."""
    if path is None:
        return frozenset()
    try:
        with open(path, encoding="utf-8") as handle:
            return frozenset(_specs(handle.read()))
    except OSError as exc:
        raise _file_error(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise _file_error(str(exc)) from None
