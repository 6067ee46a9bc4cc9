"""``forwarder taxonomy``: the forwarded event types in the project's taxonomy, Delivery events inactive; run as an
operator runs it, against the local service's Taxonomy API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from subprocess import CompletedProcess

import httpx
import pytest

from devkit.amplitude import AmplitudeService, ServiceThread
from forwarder.amplitude.taxonomy import CATEGORY, EventType, differences, wanted_types
from forwarder.core.select import Selection
from schemas.catalogue import CATALOGUE
from tests.helpers import run_forwarder


@pytest.fixture
def service() -> Iterator[tuple[AmplitudeService, str]]:
    service = AmplitudeService(api_keys={"key-1"}, secret_key="secret-1")
    runner = ServiceThread(service.app)
    url = runner.start()
    try:
        yield service, url
    finally:
        runner.stop()


SECRET = "secret-1"


def taxonomy(url: str, *args: str, secret: str | None = SECRET, events: str = "all") -> CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMPLITUDE_", "FORWARDER_"))}
    env |= {"AMPLITUDE_API_KEY": "key-1", "AMPLITUDE_API_URL": url, "FORWARDER_EVENTS": events}
    if secret is not None:
        env["AMPLITUDE_SECRET_KEY"] = secret
    return run_forwarder(env, "taxonomy", *args, timeout=60)


def test_delivery_events_are_wanted_inactive_and_interaction_events_active() -> None:
    wanted = {event.name: event for event in wanted_types(Selection.parse("all"))}
    assert len(wanted) == len(CATALOGUE) == 44
    assert wanted["Email Sent"].active is False
    assert wanted["Email Opened"].active is True
    assert all(event.category == CATEGORY for event in wanted.values())
    email_sent = wanted["Email Sent"].description
    assert email_sent is not None
    assert "MOE_EMAIL_SENT" in email_sent
    assert "Delivery" in email_sent
    only_sms = wanted_types(Selection.parse("SMS"))
    assert {event.name for event in only_sms} == {e.name for e in CATALOGUE.events if e.channel == "SMS"}


def test_what_differs_is_named_and_right_event_types_are_left_alone() -> None:
    email_sent, email_opened = (
        next(e for e in wanted_types(Selection.parse("all")) if e.name == name)
        for name in ("Email Sent", "Email Opened")
    )
    present = {
        "Email Sent": EventType("Email Sent", "Marketing", email_sent.description, active=None),
        "Email Opened": email_opened,
        "Checkout": EventType("Checkout", "Shop", None, active=True),
    }
    found = {d.event_type: d.what for d in differences([email_sent, email_opened], present)}
    assert found == {"Email Sent": ("category Marketing -> MoEngage", "active -> inactive")}


def test_differences_then_apply_then_none(service: tuple[AmplitudeService, str]) -> None:
    local, url = service
    # A project that already has one of them, active and uncategorised, and one event type of its own.
    for name in ("Email Sent", "Checkout"):
        answer = httpx.post(
            f"{url}/api/2/taxonomy/event", data={"event_type": name}, auth=("key-1", "secret-1"), timeout=10
        )
        assert answer.status_code == 200
    first = taxonomy(url, events="EMAIL")
    assert first.returncode == 3, first.stderr
    assert "Email Sent" in first.stdout
    assert "active -> inactive" in first.stdout
    assert "missing" in first.stdout
    emails = sum(1 for e in CATALOGUE.events if e.channel == "Email")
    assert f"{emails} of {emails} forwarded event types differ" in first.stdout
    applied = taxonomy(url, "--apply", events="EMAIL")
    assert applied.returncode == 0, applied.stderr
    assert f"applied: {emails - 1} created, 1 updated" in applied.stdout
    again = taxonomy(url, events="EMAIL")
    assert again.returncode == 0, again.stdout
    assert "as they should be" in again.stdout
    kept = local.taxonomy.event_types
    assert kept["Email Sent"].is_active is False
    assert kept["Email Opened"].is_active is True
    assert kept["Email Sent"].category == "MoEngage"
    assert kept["Checkout"].category == ""  # not MoEngage's: untouched
    assert kept["Checkout"].is_active
    assert not any(e.channel != "Email" and e.name in kept for e in CATALOGUE.events)  # outside the selection


def test_a_missing_or_refused_secret_is_one_line_without_it(service: tuple[AmplitudeService, str]) -> None:
    _, url = service
    missing = taxonomy(url, secret=None)
    assert missing.returncode == 2
    assert "AMPLITUDE_SECRET_KEY: is required" in missing.stderr
    refused = taxonomy(url, secret="wrong-secret-7")
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0
    assert "refused AMPLITUDE_API_KEY / AMPLITUDE_SECRET_KEY (HTTP 401)" in refused.stderr
    assert "wrong-secret-7" not in refused.stderr
    assert "Traceback" not in missing.stderr + refused.stderr
