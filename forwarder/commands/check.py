"""The forwarder half's checks: Kafka with the configured security, both halves' topics as configured, Amplitude's
key against the configured residency (and the other one when refused), the secret key when set.

The key is checked without sending an event: a request with an empty ``events`` list. Amplitude answers it 400 with
``missing_field: events`` when the key is valid and 400 ``Invalid API key`` when it is not (a key of the other
residency included: shared/spec/amplitude-api.md); nothing is ingested either way. The local service answers the
same, in the same order (it checks the key before the events).
"""

from __future__ import annotations

import os

import httpx
import orjson

from forwarder.amplitude.dashboard import DashboardAPI, DashboardError
from forwarder.checks import Finding
from forwarder.kafka.admin import KafkaUnavailable, preflight
from forwarder.kafka.security import client_options
from forwarder.kafka.topics import TopicsError, desired_topics, reconcile
from forwarder.routes import load_routes
from forwarder.settings import ForwarderSettings, Settings, SettingsError

KEY_CHECK_PATH = "/2/httpapi"


async def kafka_and_topics(settings: Settings) -> list[Finding]:
    if not settings.kafka.bootstrap_servers:
        return [Finding("kafka", False, "KAFKA_BOOTSTRAP_SERVERS is not set")]
    try:
        await preflight(client_options(settings), timeout_s=15)
    except KafkaUnavailable as exc:
        return [Finding("kafka", False, str(exc))]
    findings = [Finding("kafka", True, f"connected to {settings.kafka.bootstrap_servers}")]
    try:
        lines, drift = await reconcile(client_options(settings), desired_topics(settings), apply=False, create=False)
    except TopicsError as exc:
        return [*findings, Finding("topics", False, str(exc))]
    problems = [line for line in lines if not line.startswith("ok ")]
    if drift:
        fix = "run: forwarder topics (or forwarder topics --apply for drift)"
        return [*findings, *(Finding("topics", False, f"{line}; {fix}") for line in problems)]
    return [*findings, Finding("topics", True, f"{len(lines)} topics as configured")]


async def _key_answer(url: str, key: str) -> str:
    """``accepted``, ``refused`` or what went wrong, for one ingestion host."""
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(url + KEY_CHECK_PATH, json={"api_key": key, "events": []})
    except httpx.HTTPError as exc:
        return f"no answer from {url} ({type(exc).__name__})"
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        body = {}
    error = str(body.get("error", "")) if isinstance(body, dict) else ""
    if answer.status_code == 400 and error.lower().startswith("invalid api key"):
        return "refused"
    if answer.status_code == 400 and isinstance(body, dict) and body.get("missing_field") == "events":
        return "accepted"
    return f"unexpected answer from {url}: HTTP {answer.status_code}"


async def amplitude_key(settings: Settings) -> list[Finding]:
    amplitude = settings.amplitude
    if amplitude.api_key is None:
        if settings.worker.routes_file is not None:
            return [Finding("amplitude key", True, "AMPLITUDE_API_KEY is not set: each route names its own key")]
        return [Finding("amplitude key", False, "AMPLITUDE_API_KEY is not set (the worker needs it)")]
    key = amplitude.api_key.get_secret_value()
    answer = await _key_answer(amplitude.base_url, key)
    where = f"AMPLITUDE_RESIDENCY={amplitude.residency} ({amplitude.base_url})"
    if answer == "accepted":
        return [Finding("amplitude key", True, f"accepted by {where}")]
    if answer != "refused":
        return [Finding("amplitude key", False, answer)]
    if amplitude.api_url is None:
        other = "eu" if amplitude.residency == "us" else "us"
        if await _key_answer(amplitude.host_of(other), key) == "accepted":
            return [
                Finding(
                    "amplitude key",
                    False,
                    f"refused by {where}; this key belongs to an {other.upper()} project: "
                    f"set AMPLITUDE_RESIDENCY={other}",
                )
            ]
    return [Finding("amplitude key", False, f"refused by {where}: check AMPLITUDE_API_KEY and AMPLITUDE_RESIDENCY")]


async def amplitude_secret(settings: Settings) -> list[Finding]:
    amplitude = settings.amplitude
    if amplitude.secret_key is None or amplitude.api_key is None:
        return [Finding("amplitude secret key", True, "not set (report --amplitude and cohorts pull need it)")]
    api = DashboardAPI(amplitude.dashboard_base_url, amplitude.api_key, amplitude.secret_key, attempts=1)
    try:
        answer = await api.get("/api/3/cohorts")
    except DashboardError as exc:
        return [Finding("amplitude secret key", False, str(exc))]
    finally:
        await api.aclose()
    if answer.status_code != 200:
        return [Finding("amplitude secret key", False, f"the Dashboard API answered HTTP {answer.status_code}")]
    return [Finding("amplitude secret key", True, f"the Dashboard API at {amplitude.dashboard_base_url} accepts it")]


async def routes(settings: Settings) -> list[Finding]:
    """The routes file (``FORWARDER_ROUTES_FILE``) as the worker reads it, and each route's key against its host."""
    if settings.worker.routes_file is None:
        return [Finding("routes", True, "one route (FORWARDER_ROUTES_FILE is not set)")]
    forwarder = ForwarderSettings(
        kafka=settings.kafka,
        topics=settings.topics,
        amplitude=settings.amplitude,
        worker=settings.worker,
        properties=settings.properties,
    )
    try:
        table = load_routes(forwarder, os.environ)
    except SettingsError as exc:
        return [Finding("routes", False, line.strip()) for line in str(exc).splitlines()[1:]]
    findings = [Finding("routes", True, f"{len(table.routes)} routes: {', '.join(r.name for r in table.routes)}")]
    for route in table.routes:
        amplitude = route.amplitude
        assert amplitude.api_key is not None  # load_routes requires one per route
        answer = await _key_answer(amplitude.base_url, amplitude.api_key.get_secret_value())
        ok = answer == "accepted"
        text = f"key accepted by {amplitude.base_url}" if ok else f"key {answer} by {amplitude.base_url}"
        findings.append(Finding(f"route {route.name}", ok, text))
    return findings


FORWARDER_CHECKS = (kafka_and_topics, amplitude_key, amplitude_secret, routes)
