"""``forwarder check``: each check's line before the first event, against the local services standing in for
Amplitude's two regions and MoEngage, and the real broker; never a secret on any line."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from devkit.amplitude import AmplitudeService, ServiceThread
from devkit.moengage import MoEngageService
from forwarder.checks import Finding
from forwarder.cohorts.check import moengage
from forwarder.commands.check import amplitude_key, amplitude_secret, routes
from forwarder.settings import Settings, settings_from
from tests.helpers import run_forwarder, topic_names_of

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}


@pytest.fixture
def regions() -> Iterator[dict[str, str]]:
    """Two local Amplitude services: the US one knows key-of-us, the EU one key-of-eu."""
    us = ServiceThread(AmplitudeService(api_keys={"key-of-us"}, secret_key="dashboard-secret").app)
    eu = ServiceThread(AmplitudeService(api_keys={"key-of-eu"}).app)
    yield {"AMPLITUDE_US_URL": us.start(), "AMPLITUDE_EU_URL": eu.start()}
    us.stop()
    eu.stop()


def lines(findings: list[Finding]) -> list[str]:
    return [f.line() for f in findings]


def check(checker, environ: dict[str, str]) -> list[str]:
    return lines(asyncio.run(checker(settings_from({**BASE, **environ}, Settings))))


def test_a_key_of_the_other_region_is_named_with_the_setting_to_change(regions) -> None:
    said = check(amplitude_key, {**regions, "AMPLITUDE_API_KEY": "key-of-eu", "AMPLITUDE_RESIDENCY": "us"})
    assert said == [
        f"FAIL amplitude key: refused by AMPLITUDE_RESIDENCY=us ({regions['AMPLITUDE_US_URL']}); this key belongs to "
        "an EU project: set AMPLITUDE_RESIDENCY=eu"
    ]
    assert check(amplitude_key, {**regions, "AMPLITUDE_API_KEY": "key-of-eu", "AMPLITUDE_RESIDENCY": "eu"}) == [
        f"ok   amplitude key: accepted by AMPLITUDE_RESIDENCY=eu ({regions['AMPLITUDE_EU_URL']})"
    ]
    nobody = check(amplitude_key, {**regions, "AMPLITUDE_API_KEY": "key-of-nobody"})
    assert nobody[0].endswith("check AMPLITUDE_API_KEY and AMPLITUDE_RESIDENCY")
    assert "key-of-nobody" not in nobody[0]


def test_the_secret_key_is_checked_with_one_dashboard_read_when_set(regions) -> None:
    key = {"AMPLITUDE_API_KEY": "key-of-us", "AMPLITUDE_API_URL": regions["AMPLITUDE_US_URL"]}
    assert check(amplitude_secret, key)[0].startswith("ok   amplitude secret key: not set")
    assert check(amplitude_secret, {**key, "AMPLITUDE_SECRET_KEY": "dashboard-secret"})[0].startswith(
        "ok   amplitude secret key: the Dashboard API at"
    )
    [wrong] = check(amplitude_secret, {**key, "AMPLITUDE_SECRET_KEY": "wrong-secret-1"})
    assert wrong.startswith("FAIL amplitude secret key: the Amplitude Dashboard API refused AMPLITUDE_API_KEY")
    assert "wrong-secret-1" not in wrong


def test_moengage_credentials_are_checked_with_a_request_that_changes_nothing() -> None:
    service = MoEngageService("workspace-1", "data-key-1")
    runner = ServiceThread(service.app)
    url = runner.start()
    try:
        ok = check(moengage, {"MOENGAGE_API_URL": url, "MOENGAGE_WORKSPACE_ID": "workspace-1"} | {
            "MOENGAGE_DATA_API_KEY": "data-key-1"
        })  # fmt: skip
        wrong = check(moengage, {"MOENGAGE_API_URL": url, "MOENGAGE_WORKSPACE_ID": "workspace-1"} | {
            "MOENGAGE_DATA_API_KEY": "not-the-key-7"
        })  # fmt: skip
    finally:
        runner.stop()
    assert ok == [f"ok   moengage: workspace workspace-1 accepted at {url}"]
    assert wrong == [
        f"FAIL moengage: {url}: refused MOENGAGE_WORKSPACE_ID / MOENGAGE_DATA_API_KEY (check MOENGAGE_DATA_CENTER too)"
    ]
    assert service.segments == {}  # nothing was added or removed


@pytest.mark.kafka
def test_forwarder_check_passes_on_a_correct_setup_and_names_a_missing_topic_or_kafka(kafka, topic_names, regions):
    source = topic_names("src")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FORWARDER_", "AMPLITUDE_", "COHORTS_"))},
        **regions,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "AMPLITUDE_API_KEY": "key-of-us",
        "FORWARDER_TOPIC_REPLICATION": "1",
        **topic_names_of(source),
    }
    missing = run_forwarder(env, "check")
    assert missing.returncode == 1
    assert f"FAIL topics: missing {source}; run: forwarder topics" in missing.stdout
    assert run_forwarder(env, "topics").returncode == 0
    passed = run_forwarder(env, "check")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.splitlines() == [
        f"ok   kafka: connected to {kafka}",
        "ok   topics: 7 topics as configured",
        f"ok   amplitude key: accepted by AMPLITUDE_RESIDENCY=us ({regions['AMPLITUDE_US_URL']})",
        "ok   amplitude secret key: not set (report --amplitude and cohorts pull need it)",
        "ok   routes: one route (FORWARDER_ROUTES_FILE is not set)",
        "ok   moengage: not configured (MOENGAGE_WORKSPACE_ID, MOENGAGE_DATA_API_KEY): cohort sync off",
    ]
    unreachable = run_forwarder({**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "check")
    assert unreachable.returncode == 1
    assert unreachable.stdout.splitlines()[0].startswith("FAIL kafka: cannot use Kafka at 127.0.0.1:1")


def test_the_routes_file_is_checked_as_the_worker_reads_it_and_each_routes_key_against_its_host(
    regions, tmp_path, monkeypatch
) -> None:
    path = tmp_path / "routes.toml"
    eu, us = regions["AMPLITUDE_EU_URL"], regions["AMPLITUDE_US_URL"]
    path.write_text(
        f'[routes.eu]\napp_names = ["Shop EU"]\namplitude_api_key_env = "EU_KEY"\napi_url = "{eu}"\n'
        f'[routes.us]\ndefault = true\namplitude_api_key_env = "US_KEY"\napi_url = "{us}"\n'
    )
    monkeypatch.setenv("EU_KEY", "key-of-eu")
    monkeypatch.setenv("US_KEY", "key-of-eu")  # the EU project's key, given to the US route
    said = check(routes, {"FORWARDER_ROUTES_FILE": str(path)})
    assert said == [
        "ok   routes: 2 routes: eu, us",
        f"ok   route eu: key accepted by {regions['AMPLITUDE_EU_URL']}",
        f"FAIL route us: key refused by {regions['AMPLITUDE_US_URL']}",
    ]
    assert check(amplitude_key, {"FORWARDER_ROUTES_FILE": str(path)})[0].startswith("ok   amplitude key: ")
    path.write_text('[routes.eu]\nresidencey = "eu"\namplitude_api_key_env = "NOT_SET_9"\n')
    bad = check(routes, {"FORWARDER_ROUTES_FILE": str(path)})
    assert bad == [
        "FAIL routes: FORWARDER_ROUTES_FILE: routes.eu: unknown key 'residencey'",
    ]
    assert not any("key-of-eu" in line for line in said + bad)
    assert check(routes, {}) == ["ok   routes: one route (FORWARDER_ROUTES_FILE is not set)"]
