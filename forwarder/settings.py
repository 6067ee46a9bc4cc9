"""One validated settings object, read from the environment and an optional ``.env``-style file.

Every setting is listed in the README's table. A start-up error names the setting and the problem and
never the value, so a secret cannot leak through a typo in another variable.
"""

from __future__ import annotations

import os
from typing import Literal, TypeVar, overload

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from forwarder.core.decode import DEFAULT_MAX_MESSAGE_BYTES
from forwarder.core.identify import AMPLITUDE_DEFAULT_MIN_ID_LENGTH
from forwarder.core.pipeline import MappingRules
from forwarder.core.select import Selection

SETTINGS_FILE_VARIABLE = "FORWARDER_SETTINGS_FILE"

# shared/spec/amplitude-api.md, "Endpoints (data residency)".
AMPLITUDE_HOSTS = {"us": "https://api2.amplitude.com", "eu": "https://api.eu.amplitude.com"}
AMPLITUDE_PATHS = {"http": "/2/httpapi", "batch": "/batch"}


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class SettingsError(Exception):
    """Bad configuration: one line per problem, each naming the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", populate_by_name=False, hide_input_in_errors=True
    )

    kafka_bootstrap_servers: str = Field(validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"), min_length=1)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", validation_alias=_env("KAFKA_SASL_MECHANISM")
    )
    kafka_sasl_username: str | None = Field(None, validation_alias=_env("KAFKA_SASL_USERNAME"))
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias=_env("KAFKA_SASL_PASSWORD"))
    kafka_ssl_cafile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CAFILE"))
    kafka_ssl_certfile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CERTFILE"))
    kafka_ssl_keyfile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_KEYFILE"))
    kafka_ssl_key_password: SecretStr | None = Field(None, validation_alias=_env("KAFKA_SSL_KEY_PASSWORD"))
    source_topic: str = Field("moengage-streams", validation_alias=_env("FORWARDER_SOURCE_TOPIC"), min_length=1)
    group_id: str = Field("moengage-amplitude-forwarder", validation_alias=_env("FORWARDER_GROUP_ID"), min_length=1)
    dlq_topic: str = Field("moengage-streams-dlq", validation_alias=_env("FORWARDER_DLQ_TOPIC"), min_length=1)
    retry_topic: str = Field("moengage-streams-retry", validation_alias=_env("FORWARDER_RETRY_TOPIC"), min_length=1)
    topic_partitions: int = Field(6, validation_alias=_env("FORWARDER_TOPIC_PARTITIONS"), ge=1, le=10_000)
    topic_replication: int = Field(3, validation_alias=_env("FORWARDER_TOPIC_REPLICATION"), ge=1, le=10)
    source_retention_hours: float = Field(168, validation_alias=_env("FORWARDER_SOURCE_RETENTION_HOURS"), gt=0)
    retry_retention_hours: float = Field(24, validation_alias=_env("FORWARDER_RETRY_RETENTION_HOURS"), gt=0)
    dlq_retention_hours: float = Field(720, validation_alias=_env("FORWARDER_DLQ_RETENTION_HOURS"), gt=0)
    dlq_max_value_bytes: int = Field(
        900_000, validation_alias=_env("FORWARDER_DLQ_MAX_VALUE_BYTES"), gt=0, le=100 * 1024 * 1024
    )
    events: str = Field("all", validation_alias=_env("FORWARDER_EVENTS"))
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES, validation_alias=_env("FORWARDER_MAX_MESSAGE_BYTES"), gt=0
    )
    batch_max_messages: int = Field(1000, validation_alias=_env("FORWARDER_BATCH_MAX_MESSAGES"), gt=0, le=10_000)
    batch_max_bytes: int = Field(1_000_000, validation_alias=_env("FORWARDER_BATCH_MAX_BYTES"), gt=0)
    batch_window_s: float = Field(0.5, validation_alias=_env("FORWARDER_BATCH_WINDOW_S"), gt=0, le=30)
    session_timeout_s: float = Field(45.0, validation_alias=_env("FORWARDER_SESSION_TIMEOUT_S"), ge=6, le=1800)
    shutdown_deadline_s: float = Field(20.0, validation_alias=_env("FORWARDER_SHUTDOWN_DEADLINE_S"), gt=0, le=600)
    stall_timeout_s: float = Field(120.0, validation_alias=_env("FORWARDER_STALL_TIMEOUT_S"), ge=10, le=86_400)
    web_host: str = Field("127.0.0.1", validation_alias=_env("FORWARDER_WEB_HOST"))
    web_port: int = Field(6066, validation_alias=_env("FORWARDER_WEB_PORT"), ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_env("FORWARDER_LOG_LEVEL")
    )

    # Required by the worker (``require``), not by the ingestion service, which never talks to Amplitude.
    amplitude_api_key: SecretStr | None = Field(None, validation_alias=_env("AMPLITUDE_API_KEY"))
    amplitude_residency: Literal["us", "eu"] = Field("us", validation_alias=_env("AMPLITUDE_RESIDENCY"))
    amplitude_api: Literal["http", "batch"] = Field("http", validation_alias=_env("AMPLITUDE_API"))
    amplitude_api_url: str | None = Field(None, validation_alias=_env("AMPLITUDE_API_URL"))
    amplitude_min_id_length: int = Field(
        AMPLITUDE_DEFAULT_MIN_ID_LENGTH, validation_alias=_env("AMPLITUDE_MIN_ID_LENGTH"), ge=1, le=1024
    )
    amplitude_timeout_s: float = Field(10.0, validation_alias=_env("AMPLITUDE_TIMEOUT_S"), gt=0, le=60)

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_kafka(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", mode="after")
    @classmethod
    def _file_exists(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isfile(value):
            raise ValueError("no such file")
        return value

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with KAFKA_SECURITY_PROTOCOL="
                + self.kafka_security_protocol
            )
        return self

    @field_validator("amplitude_residency", "amplitude_api", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    ingest_host: str = Field("127.0.0.1", validation_alias=_env("FORWARDER_INGEST_HOST"))
    ingest_port: int = Field(8080, validation_alias=_env("FORWARDER_INGEST_PORT"), ge=0, le=65535)
    ingest_path: str = Field("/moengage/streams", validation_alias=_env("FORWARDER_INGEST_PATH"), pattern=r"^/")
    ingest_basic_auth: SecretStr | None = Field(None, validation_alias=_env("FORWARDER_INGEST_BASIC_AUTH"))
    ingest_header: SecretStr | None = Field(None, validation_alias=_env("FORWARDER_INGEST_HEADER"))
    ingest_allow_unauthenticated: bool = Field(False, validation_alias=_env("FORWARDER_INGEST_ALLOW_UNAUTHENTICATED"))
    ingest_max_body_bytes: int = Field(
        1_000_000, validation_alias=_env("FORWARDER_INGEST_MAX_BODY_BYTES"), gt=0, le=20_000_000
    )
    ingest_kafka_timeout_s: float = Field(10.0, validation_alias=_env("FORWARDER_INGEST_KAFKA_TIMEOUT_S"), gt=0)

    @field_validator("amplitude_api_key", "ingest_basic_auth", "ingest_header", mode="after")
    @classmethod
    def _secret_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("ingest_basic_auth", mode="after")
    @classmethod
    def _basic_auth_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            user, sep, password = value.get_secret_value().partition(":")
            if not (user and sep and password):
                raise ValueError("must be user:password")
        return value

    @field_validator("ingest_header", mode="after")
    @classmethod
    def _header_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            name, sep, header_value = value.get_secret_value().partition(":")
            if not (name.strip() and sep and header_value.strip()):
                raise ValueError("must be 'Name: value'")
        return value

    @field_validator("events", mode="after")
    @classmethod
    def _selection_parses(cls, value: str) -> str:
        Selection.parse(value)
        return value

    @field_validator("amplitude_api_url", mode="after")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def amplitude_base_url(self) -> str:
        return self.amplitude_api_url or AMPLITUDE_HOSTS[self.amplitude_residency]

    def amplitude_endpoint(self, api: str | None = None) -> str:
        return self.amplitude_base_url + AMPLITUDE_PATHS[api or self.amplitude_api]

    def mapping_rules(self) -> MappingRules:
        return MappingRules(
            selection=Selection.parse(self.events),
            min_id_length=self.amplitude_min_id_length,
            max_message_bytes=self.max_message_bytes,
        )


def _describe(error: ValidationError) -> list[str]:
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in problem["loc"]) or "settings"
        field = Settings.model_fields.get(str(problem["loc"][0])) if problem["loc"] else None
        if field is not None and isinstance(field.validation_alias, AliasChoices):
            name = str(field.validation_alias.choices[0])
        message = problem["msg"]
        if problem["type"] == "missing":
            message = "is required but not set"
        if not problem["loc"]:  # a rule across settings names them itself
            lines.append(message.removeprefix("Value error, "))
            continue
        lines.append(f"{name.upper()}: {message}")
    return lines


class WorkerSettings(Settings):
    """The worker's view: the same settings, with the Amplitude key required."""

    amplitude_api_key: SecretStr = Field(validation_alias=_env("AMPLITUDE_API_KEY"))


class BackfillSettings(Settings):
    """``backfill`` reads files: Kafka is optional (dead letters go to a file without it)."""

    kafka_bootstrap_servers: str | None = Field(  # type: ignore[assignment]
        None, validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )


S = TypeVar("S", bound=Settings)


@overload
def load_settings() -> Settings: ...
@overload
def load_settings(kind: type[S]) -> S: ...
def load_settings(kind: type[Settings] = Settings) -> Settings:
    """Settings from the environment, then ``FORWARDER_SETTINGS_FILE`` if set; the environment wins."""
    env_file = os.environ.get(SETTINGS_FILE_VARIABLE)
    if env_file and not os.path.isfile(env_file):
        raise SettingsError(f"invalid settings:\n  {SETTINGS_FILE_VARIABLE}: file {env_file!r} does not exist")
    try:
        return kind(_env_file=env_file or None)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(_describe(exc))) from None
