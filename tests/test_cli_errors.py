"""Every command answers bad input with one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from forwarder.kafka.admin import create_topics

UNREACHABLE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "AMPLITUDE_API_KEY": "k"}


def forwarder(*args: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "FORWARDER_", "AMPLITUDE_", "MOENGAGE_", "COHORTS_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "forwarder", *args],
        env={**clean, **(env or {})},
        input=stdin,
        capture_output=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("worker",), UNREACHABLE, "cannot use Kafka at 127.0.0.1:1"),
        # The worker reads only its own settings parts: a bad cohort-sync value does not stop it.
        (("worker",), {**UNREACHABLE, "MOENGAGE_DATA_CENTER": "99", "COHORTS_WEB_PORT": "x"}, "cannot use Kafka at"),
        (("topics",), UNREACHABLE, "cannot use Kafka at 127.0.0.1:1"),
        (("replay", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z"), UNREACHABLE, "cannot use Kafka"),
        (
            ("replay", "--dry-run", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z"),
            UNREACHABLE,
            "cannot use Kafka",
        ),
        (("replay-dlq",), UNREACHABLE, "cannot use Kafka at 127.0.0.1:1"),
        (("report", "--timezone", "Mars/Olympus"), UNREACHABLE, "--timezone: 'Mars/Olympus' is not a known IANA"),
        (("report",), {**UNREACHABLE, "AMPLITUDE_PROJECT_TIMEZONE": "PST8PDTX"}, "AMPLITUDE_PROJECT_TIMEZONE: "),
        (("transform", "-"), {"FORWARDER_USER_PROPERTIES": "plan:maybe"}, "FORWARDER_USER_PROPERTIES: "),
        (("transform", "-", "--summary", "/nonexistent/dir/s.json"), None, "cannot write /nonexistent/dir/s.json"),
        (("transform", "/"), None, "cannot read /"),
        (("amplitude-local", "--port", "0", "--faults", "{bad"), None, "forwarder amplitude-local:"),
        (("amplitude-local", "--port", "0", "--faults", '{"nope": 1}'), None, "unknown fault settings"),
        (("moengage-local", "--port", "0", "--faults", '{"nope": 1}'), None, "unknown fault settings"),
        (("moengage-local", "--port", "0", "--known-uids", "/nonexistent/uids.txt"), None, "forwarder moengage-local"),
        (
            ("worker",),
            {"KAFKA_BOOTSTRAP_SERVERS": "x", "AMPLITUDE_API_KEY": "k", "FORWARDER_BATCH_WINDOW_S": "abc"},
            "FORWARDER_BATCH_WINDOW_S",
        ),
        (("cohorts", "worker"), {"KAFKA_BOOTSTRAP_SERVERS": "x"}, "MOENGAGE_DATA_API_KEY: is required"),
        (
            ("cohorts", "worker"),
            {**UNREACHABLE, "MOENGAGE_WORKSPACE_ID": "w", "MOENGAGE_DATA_API_KEY": "k", "MOENGAGE_DATA_CENTER": "9"},
            "MOENGAGE_DATA_CENTER: Value error, must be one of 01, 02, 03, 04, 05, 06",
        ),
        (
            ("cohorts", "worker"),
            {**UNREACHABLE, "MOENGAGE_WORKSPACE_ID": "w", "MOENGAGE_DATA_API_KEY": "k"},
            "cannot use Kafka",
        ),
        (("cohorts", "pull", "--cohort", "c1"), UNREACHABLE, "AMPLITUDE_SECRET_KEY: is required"),
        (("cohorts", "pull"), {**UNREACHABLE, "AMPLITUDE_SECRET_KEY": "s"}, "name --cohort ID (repeatable), or --all"),
        (("cohorts", "status"), UNREACHABLE, "cannot use Kafka at 127.0.0.1:1"),
        (("cohorts", "demo", "--leave", "-1"), None, "must be >= 0"),
    ],
)
def test_bad_input_gets_one_line_not_a_traceback(args: tuple[str, ...], env: dict[str, str] | None, says: str) -> None:
    result = forwarder(*args, env=env, stdin=b"{}")
    stderr = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in stderr
    assert says in stderr.strip().splitlines()[-1]


@pytest.mark.kafka
def test_topics_with_more_replicas_than_brokers_names_the_setting_and_the_fix(kafka, topic_names) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka, "FORWARDER_SOURCE_TOPIC": topic_names("src")}
    result = forwarder("topics", env=env)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert lines == [
        "forwarder topics: FORWARDER_TOPIC_REPLICATION=3 but the cluster has 1 broker(s); "
        "set FORWARDER_TOPIC_REPLICATION to at most 1 (1 for the local broker) and run again"
    ]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {**UNREACHABLE, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u"}
            | {"KAFKA_SASL_PASSWORD": "pw-never-shown"},
            "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: the SASL password and every record cross the network unencrypted",
        ),
        (
            {**UNREACHABLE, "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "pw-never-shown"},
            "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
    ],
)
def test_a_connection_in_clear_with_credentials_is_warned_about_before_connecting(env, says) -> None:
    result = forwarder("topics", env=env)
    stderr = result.stderr.decode()
    assert says in stderr
    assert "pw-never-shown" not in stderr
    assert "cannot use Kafka at 127.0.0.1:1" in stderr.strip().splitlines()[-1]


def test_a_connection_with_tls_or_without_credentials_gets_no_warning() -> None:
    assert "unencrypted" not in forwarder("topics", env=UNREACHABLE).stderr.decode()


@pytest.mark.kafka
def test_a_cohort_worker_asking_more_replicas_than_brokers_names_the_setting(kafka, topic_names) -> None:
    topic = topic_names("cohorts")
    asyncio.run(create_topics(kafka, {topic: 1}))
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka, "COHORTS_TOPIC": topic, "MOENGAGE_WORKSPACE_ID": "w"}
    result = forwarder("cohorts", "worker", env={**env, "MOENGAGE_DATA_API_KEY": "k"})
    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "forwarder cohorts worker: COHORTS_TOPIC_REPLICATION=3 but the cluster has 1 broker(s); set "
        "COHORTS_TOPIC_REPLICATION to at most 1 (1 for the local broker) and run again"
    )
