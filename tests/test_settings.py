"""Bad settings give named errors, and no error or log line ever carries a secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forwarder.settings import (
    CohortWorkerSettings,
    IngestCommandSettings,
    Settings,
    SettingsError,
    WorkerSettings,
    load_settings,
    settings_from,
)

SECRET = "amp-secret-key-do-not-print"
BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "AMPLITUDE_API_KEY": SECRET}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    for name in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "AMPLITUDE_API_KEY",
        "AMPLITUDE_RESIDENCY",
        "AMPLITUDE_API_URL",
        "FORWARDER_EVENTS",
        "FORWARDER_SETTINGS_FILE",
        "AMPLITUDE_API",
        "AMPLITUDE_MIN_ID_LENGTH",
    ):
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for key, value in {**BASE, **values}.items():
            monkeypatch.setenv(key, value)

    return set_env


def test_defaults_point_at_amplitude_us_http_v2(env) -> None:
    env()
    settings = load_settings(Settings)
    assert settings.amplitude.endpoint() == "https://api2.amplitude.com/2/httpapi"
    assert settings.topics.source_topic == "moengage-streams"
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("residency", "api", "url"),
    [
        ("us", "http", "https://api2.amplitude.com/2/httpapi"),
        ("us", "batch", "https://api2.amplitude.com/batch"),
        ("EU", "http", "https://api.eu.amplitude.com/2/httpapi"),
        ("eu", "batch", "https://api.eu.amplitude.com/batch"),
    ],
)
def test_all_four_residency_and_endpoint_combinations(env, residency: str, api: str, url: str) -> None:
    env(AMPLITUDE_RESIDENCY=residency, AMPLITUDE_API=api)
    assert load_settings(Settings).amplitude.endpoint() == url


def test_the_local_service_overrides_the_base_url(env) -> None:
    env(AMPLITUDE_API_URL="http://127.0.0.1:8765/")
    assert load_settings(Settings).amplitude.endpoint() == "http://127.0.0.1:8765/2/httpapi"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"AMPLITUDE_RESIDENCY": "mars"}, "AMPLITUDE_RESIDENCY: Input should be 'us' or 'eu'"),
        ({"AMPLITUDE_API_KEY": "  "}, "AMPLITUDE_API_KEY: Value error, must not be empty"),
        ({"FORWARDER_EVENTS": "channel:Emial"}, "FORWARDER_EVENTS: Value error, 'Emial' is not a channel"),
        ({"AMPLITUDE_MIN_ID_LENGTH": "0"}, "AMPLITUDE_MIN_ID_LENGTH: Input should be greater than or equal to 1"),
        ({"AMPLITUDE_API_URL": "ftp://x"}, "AMPLITUDE_API_URL: Value error, must start with http"),
    ],
)
def test_a_bad_setting_is_named(env, overrides: dict[str, str], message: str) -> None:
    env(**overrides)
    with pytest.raises(SettingsError) as caught:
        load_settings(Settings)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


def test_missing_required_settings_are_named(env, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(WorkerSettings)
    assert "KAFKA_BOOTSTRAP_SERVERS: is required but not set" in str(caught.value)
    assert "AMPLITUDE_API_KEY: is required but not set" in str(caught.value)


def test_the_ingestion_service_needs_no_amplitude_key(env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    assert load_settings(Settings).amplitude.api_key is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "FORWARDER_INGEST_BASIC_AUTH",
            "no-colon-here",
            "FORWARDER_INGEST_BASIC_AUTH: Value error, must be user:password",
        ),
        ("FORWARDER_INGEST_HEADER", "X-Api-Key", "FORWARDER_INGEST_HEADER: Value error, must be 'Name: value'"),
        ("FORWARDER_INGEST_PATH", "no-slash", "FORWARDER_INGEST_PATH: String should match pattern"),
    ],
)
def test_bad_ingest_settings_are_named_without_their_value(env, name: str, value: str, message: str) -> None:
    env(**{name: value})
    with pytest.raises(SettingsError) as caught:
        load_settings(Settings)
    assert message in str(caught.value)
    assert value not in str(caught.value)


def test_ingest_refuses_to_start_without_authentication(env) -> None:
    env()
    result = subprocess.run(
        [sys.executable, "-m", "forwarder", "ingest"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 2
    assert "FORWARDER_INGEST_ALLOW_UNAUTHENTICATED=true only for a local demo" in result.stderr


def test_a_secret_typed_into_the_wrong_setting_is_not_echoed(env) -> None:
    env(AMPLITUDE_RESIDENCY=SECRET)
    with pytest.raises(SettingsError) as caught:
        load_settings(Settings)
    assert SECRET not in str(caught.value)


def test_settings_file_is_read_and_the_environment_wins(env, monkeypatch, tmp_path: Path) -> None:
    env()
    path = tmp_path / "forwarder.env"
    path.write_text("FORWARDER_SOURCE_TOPIC=from-file\nKAFKA_BOOTSTRAP_SERVERS=file:9092\n")
    monkeypatch.setenv("FORWARDER_SETTINGS_FILE", str(path))
    settings = load_settings(Settings)
    assert settings.topics.source_topic == "from-file"
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    monkeypatch.setenv("FORWARDER_SETTINGS_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(SettingsError, match=r"FORWARDER_SETTINGS_FILE: file .* does not exist"):
        load_settings(Settings)


def test_settings_is_one_object_by_part() -> None:
    assert set(Settings.model_fields) == {
        "kafka",
        "topics",
        "amplitude",
        "worker",
        "ingest",
        "moengage",
        "cohorts",
        "state",
        "properties",
    }
    assert "api_key" in Settings.model_fields["amplitude"].annotation.model_fields  # type: ignore[union-attr]


def test_moengage_data_center_is_one_of_six_and_the_cohort_settings_name_themselves() -> None:
    base = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}
    assert (
        settings_from({**base, "MOENGAGE_DATA_CENTER": "2"}, Settings).moengage.base_url
        == "https://api-02.moengage.com"
    )
    for bad in ("07", "00", "eu", ""):
        with pytest.raises(SettingsError, match=r"MOENGAGE_DATA_CENTER: .*01, 02, 03, 04, 05, 06"):
            settings_from({**base, "MOENGAGE_DATA_CENTER": bad}, Settings)
    with pytest.raises(SettingsError) as raised:
        settings_from(
            {**base, "COHORTS_WEBHOOK_HEADER": "no-colon-secret", "MOENGAGE_DATA_API_KEY": "k"}, CohortWorkerSettings
        )
    message = str(raised.value)
    assert "COHORTS_WEBHOOK_HEADER: " in message
    assert "MOENGAGE_WORKSPACE_ID: is required" in message
    assert "no-colon-secret" not in message


def test_each_command_validates_only_the_parts_it_uses() -> None:
    environ = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "AMPLITUDE_API_KEY": "k", "MOENGAGE_DATA_CENTER": "99"}
    assert settings_from(environ, WorkerSettings).amplitude.residency == "us"
    with pytest.raises(SettingsError, match="MOENGAGE_DATA_CENTER"):
        settings_from({**environ, "MOENGAGE_WORKSPACE_ID": "w", "MOENGAGE_DATA_API_KEY": "k"}, CohortWorkerSettings)
    forwarder_typo = {**environ, "MOENGAGE_DATA_CENTER": "02", "FORWARDER_BATCH_WINDOW_S": "abc"}
    cohorts = settings_from(
        {**forwarder_typo, "MOENGAGE_WORKSPACE_ID": "w", "MOENGAGE_DATA_API_KEY": "k"}, CohortWorkerSettings
    )
    assert cohorts.moengage.data_center == "02"


def test_the_cohort_worker_reads_its_old_forwarder_names_for_one_release(caplog: pytest.LogCaptureFixture) -> None:
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "MOENGAGE_WORKSPACE_ID": "w",
        "MOENGAGE_DATA_API_KEY": "k",
        "FORWARDER_SESSION_TIMEOUT_S": "30",
        "FORWARDER_WEB_HOST": "0.0.0.0",
        "COHORTS_LOG_LEVEL": "debug",
        "FORWARDER_LOG_LEVEL": "error",
    }
    with caplog.at_level("WARNING", logger="forwarder.settings"):
        cohorts = settings_from(environ, CohortWorkerSettings).cohorts
    assert (cohorts.session_timeout_s, cohorts.web_host, cohorts.log_level) == (30.0, "0.0.0.0", "DEBUG")
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "FORWARDER_SESSION_TIMEOUT_S" in warned
    assert "COHORTS_SESSION_TIMEOUT_S" in warned
    assert "FORWARDER_LOG_LEVEL" not in warned  # its own name was set: the old one is not read


def test_ingest_tls_needs_both_files_and_they_must_exist(tmp_path) -> None:
    base = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="FORWARDER_INGEST_TLS_CERTFILE and FORWARDER_INGEST_TLS_KEYFILE: set both"):
        settings_from({**base, "FORWARDER_INGEST_TLS_CERTFILE": str(cert)}, IngestCommandSettings)
    with pytest.raises(SettingsError, match="FORWARDER_INGEST_TLS_KEYFILE: Value error, no such file"):
        settings_from(
            {**base, "FORWARDER_INGEST_TLS_CERTFILE": str(cert), "FORWARDER_INGEST_TLS_KEYFILE": "/nope.pem"},
            IngestCommandSettings,
        )


def test_user_properties_pii_and_time_zone_settings_are_checked_at_start_without_echoing_the_salt() -> None:
    base = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "AMPLITUDE_API_KEY": "k"}
    settings = settings_from(
        {
            **base,
            "FORWARDER_USER_PROPERTIES": "plan, city:setOnce",
            "FORWARDER_PII": "moe_email_id:sha256,moe_mobile_number:drop",
            "FORWARDER_PII_SALT": "pepper-secret",
            "AMPLITUDE_PROJECT_TIMEZONE": "America/Los_Angeles",
        },
        WorkerSettings,
    )
    rules = settings.mapping_rules()
    assert rules.user_properties is not None
    assert rules.user_properties.names == (("plan", "$set"), ("city", "$setOnce"))
    assert rules.pii is not None
    assert dict(rules.pii.actions) == {"moe_email_id": "sha256", "moe_mobile_number": "drop"}
    assert rules.pii.salt == "pepper-secret"
    replaying = settings.mapping_rules(replaying=True).user_properties
    assert replaying is not None
    assert replaying.set_once_only
    assert settings.amplitude.project_timezone == "America/Los_Angeles"
    assert settings_from(base, WorkerSettings).mapping_rules().user_properties is None  # the default: none sent
    bad = {
        "FORWARDER_USER_PROPERTIES": "plan:sometimes",
        "FORWARDER_PII": "moe_email_id:md5",
        "FORWARDER_PII_SALT": "pepper-secret",
        "AMPLITUDE_PROJECT_TIMEZONE": "Mars/Olympus",
        "FORWARDER_USER_PROPERTIES_CACHE": "0",
    }
    with pytest.raises(SettingsError) as raised:
        settings_from({**base, **bad}, WorkerSettings)
    message = str(raised.value)
    for name in bad.keys() - {"FORWARDER_PII_SALT"}:
        assert f"{name}: " in message
    assert "plan:sometimes" in message
    assert "the action must be drop or sha256" in message
    assert "Mars/Olympus" in message
    assert "pepper-secret" not in message
