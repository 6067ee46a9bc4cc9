"""One validated settings object, by part, read from the environment and an optional ``.env``-style file.

Each part (``kafka``, ``topics``, ``amplitude``, ``worker``, ``ingest``, ``moengage``, ``cohorts``) is a model
whose environment names come from an alias generator (``KAFKA_`` + field, ``AMPLITUDE_`` + field, ``FORWARDER_`` +
field, ...) and which checks its own rules, once. Each command reads a *kind*: the parts it uses and no others
(``WorkerSettings``, ``CohortWorkerSettings``, ...), so a typo in a ``MOENGAGE_*`` value never stops the forwarder
worker. Every setting is listed in docs/operations.md's table. A start-up error names the setting and the problem
and never the value, so a secret cannot leak through a typo in another variable.
"""

from __future__ import annotations

import logging
import os
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from forwarder.core.decode import DEFAULT_MAX_MESSAGE_BYTES
from forwarder.core.identify import AMPLITUDE_DEFAULT_MIN_ID_LENGTH
from forwarder.core.pii import PiiRules
from forwarder.core.pipeline import MappingRules
from forwarder.core.select import Selection
from forwarder.core.user_properties import UserPropertyRules

SETTINGS_FILE_VARIABLE = "FORWARDER_SETTINGS_FILE"

# shared/spec/amplitude-api.md, "Endpoints (data residency)".
AMPLITUDE_HOSTS = {"us": "https://api2.amplitude.com", "eu": "https://api.eu.amplitude.com"}
AMPLITUDE_PATHS = {"http": "/2/httpapi", "batch": "/batch"}
# The Dashboard REST API (reconciliation's count, cohort exports): another host than ingestion, per residency.
AMPLITUDE_DASHBOARD_HOSTS = {"us": "https://amplitude.com", "eu": "https://analytics.eu.amplitude.com"}
# shared/spec/cohort-sync.md, "MoEngage side": one API host per data center.
MOENGAGE_DATA_CENTERS = ("01", "02", "03", "04", "05", "06")


class SettingsError(Exception):
    """Bad configuration: one line per problem, each naming the setting."""


def _named(prefix: str) -> Callable[[str], str]:
    return lambda field: prefix + field.upper()


def _part(prefix: str) -> ConfigDict:
    return ConfigDict(
        alias_generator=_named(prefix), populate_by_name=False, extra="ignore", hide_input_in_errors=True, frozen=True
    )


def _not_blank(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not value.get_secret_value().strip():
        raise ValueError("must not be empty")
    return value


def _two_parts(value: SecretStr | None, shape: str) -> SecretStr | None:
    """``user:password`` or ``Name: value``: something on each side of the first colon."""
    if _not_blank(value) is not None and value is not None:
        left, sep, right = value.get_secret_value().partition(":")
        if not (left.strip() and sep and right.strip()):
            raise ValueError(shape)
    return value


def _both_or_neither(first: object, second: object, names: str) -> None:
    if (first is None) != (second is None):
        raise ValueError(f"{names}: set both, or neither")


class KafkaSettings(BaseModel):
    """How every client reaches the cluster."""

    model_config = _part("KAFKA_")

    bootstrap_servers: str = Field(min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: SecretStr | None = None

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile", mode="after")
    @classmethod
    def _file_exists(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isfile(value):
            raise ValueError("no such file")
        return value

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with KAFKA_SECURITY_PROTOCOL="
                + self.security_protocol
            )
        return self


class TopicSettings(BaseModel):
    """The topics the product reads and writes, and how ``forwarder topics`` creates them."""

    model_config = _part("FORWARDER_")

    source_topic: str = Field("moengage-streams", min_length=1)
    group_id: str = Field("moengage-amplitude-forwarder", min_length=1)
    dlq_topic: str = Field("moengage-streams-dlq", min_length=1)
    retry_topic: str = Field("moengage-streams-retry", min_length=1)
    ledger_topic: str = Field("moengage-streams-ledger", min_length=1)
    topic_partitions: int = Field(6, ge=1, le=10_000)
    topic_replication: int = Field(3, ge=1, le=10)
    # How many replicas must have a write before acks=all answers; unset: min(2, replication).
    topic_min_insync_replicas: int | None = Field(None, ge=1, le=10)
    source_retention_hours: float = Field(168, gt=0)
    retry_retention_hours: float = Field(24, gt=0)
    dlq_retention_hours: float = Field(720, gt=0)
    ledger_retention_hours: float = Field(2160, gt=0)
    dlq_max_value_bytes: int = Field(900_000, gt=0, le=100 * 1024 * 1024)

    @model_validator(mode="after")
    def _insync_within_replication(self) -> TopicSettings:
        if self.topic_min_insync_replicas is not None and self.topic_min_insync_replicas > self.topic_replication:
            raise ValueError(
                "FORWARDER_TOPIC_MIN_INSYNC_REPLICAS must be at most FORWARDER_TOPIC_REPLICATION "
                f"({self.topic_replication}): no write could be acknowledged"
            )
        return self

    @property
    def min_insync_replicas(self) -> int:
        """With acks=all, a write is acknowledged once this many replicas have it: two survive one broker's loss."""
        return self.topic_min_insync_replicas or min(2, self.topic_replication)


class AmplitudeSettings(BaseModel):
    """Where events go. The key is required by the commands that send (``WorkerSettings``)."""

    model_config = _part("AMPLITUDE_")

    api_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    residency: Literal["us", "eu"] = "us"
    api: Literal["http", "batch"] = "http"
    api_url: str | None = None
    dashboard_url: str | None = None
    # Each residency's ingestion host (an egress proxy may stand in): ``forwarder check`` tries the other one when
    # the key is refused.
    us_url: str = AMPLITUDE_HOSTS["us"]
    eu_url: str = AMPLITUDE_HOSTS["eu"]
    min_id_length: int = Field(AMPLITUDE_DEFAULT_MIN_ID_LENGTH, ge=1, le=1024)
    timeout_s: float = Field(10.0, gt=0, le=60)
    # The project's time zone (Amplitude's project settings): the Dashboard API counts days in it.
    project_timezone: str = "UTC"

    @field_validator("project_timezone", mode="after")
    @classmethod
    def _zone(cls, value: str) -> str:
        time_zone(value)
        return value.strip()

    @field_validator("residency", "api", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("api_key", "secret_key", mode="after")
    @classmethod
    def _key_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        return _not_blank(value)

    @field_validator("us_url", "eu_url", mode="after")
    @classmethod
    def _host_url(cls, value: str) -> str:
        return cls._url(value) or AMPLITUDE_HOSTS["us"]

    @field_validator("api_url", "dashboard_url", mode="after")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def host_of(self, residency: str) -> str:
        return self.us_url if residency == "us" else self.eu_url

    @property
    def base_url(self) -> str:
        return self.api_url or self.host_of(self.residency)

    def endpoint(self, api: str | None = None) -> str:
        return self.base_url + AMPLITUDE_PATHS[api or self.api]

    @property
    def dashboard_base_url(self) -> str:
        """``AMPLITUDE_DASHBOARD_URL``, else ``AMPLITUDE_API_URL`` (the local service answers both), else the
        residency's Dashboard host."""
        return self.dashboard_url or self.api_url or AMPLITUDE_DASHBOARD_HOSTS[self.residency]


class WorkerPart(BaseModel):
    """What the worker selects, how it batches, and how it reports."""

    model_config = _part("FORWARDER_")

    events: str = "all"
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, gt=0)
    batch_max_messages: int = Field(1000, gt=0, le=10_000)
    batch_max_bytes: int = Field(1_000_000, gt=0)
    batch_window_s: float = Field(0.5, gt=0, le=30)
    max_in_flight: int = Field(8, ge=1, le=64)
    commit_interval_s: float = Field(1.0, gt=0, le=60)
    session_timeout_s: float = Field(45.0, ge=6, le=1800)
    shutdown_deadline_s: float = Field(20.0, gt=0, le=600)
    stall_timeout_s: float = Field(120.0, ge=10, le=86_400)
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Several Amplitude projects (forwarder/routes.py); unset: one route from these settings.
    routes_file: str | None = None
    # How long a route's Amplitude may keep failing before its events are parked on the retry topic.
    route_park_after_s: float = Field(60.0, ge=1, le=86_400)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("routes_file", mode="after")
    @classmethod
    def _routes_file_exists(cls, value: str | None) -> str | None:
        return KafkaSettings._file_exists(value.strip() or None if value is not None else None)

    @field_validator("events", mode="after")
    @classmethod
    def _selection_parses(cls, value: str) -> str:
        Selection.parse(value)
        return value


class PropertiesPart(BaseModel):
    """What of the user goes to Amplitude: user properties (opt in) and the PII rules (default: the guide's)."""

    model_config = _part("FORWARDER_")

    user_properties: str = ""
    user_properties_cache: int = Field(100_000, ge=1, le=10_000_000)
    pii: str = ""
    pii_salt: SecretStr = SecretStr("")

    @field_validator("user_properties", "pii", mode="after")
    @classmethod
    def _rules_parse(cls, value: str, info: ValidationInfo) -> str:
        (UserPropertyRules.parse if info.field_name == "user_properties" else PiiRules.parse)(value)
        return value

    def user_property_rules(self) -> UserPropertyRules | None:
        return UserPropertyRules.parse(self.user_properties)

    def pii_rules(self) -> PiiRules | None:
        return PiiRules.parse(self.pii, self.pii_salt.get_secret_value())


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """An IANA zone (``America/Los_Angeles``); ValueError names it when unknown."""
    try:
        return zoneinfo.ZoneInfo(name.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name.strip()!r} is not a known IANA time zone (e.g. UTC, America/Los_Angeles)") from None


class StatePart(BaseModel):
    """Where commands keep what must outlive a run (``backfill``'s checkpoints)."""

    model_config = _part("FORWARDER_")

    state_dir: str | None = None

    @property
    def directory(self) -> str:
        """``FORWARDER_STATE_DIR``, else ``$XDG_STATE_HOME`` (or ``~/.local/state``) + the product's name."""
        root = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        return self.state_dir or os.path.join(root, "moengage-amplitude-forwarder")


class IngestSettings(BaseModel):
    """The HTTP endpoint MoEngage Streams posts to."""

    model_config = _part("FORWARDER_INGEST_")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    path: str = Field("/moengage/streams", pattern=r"^/")
    basic_auth: SecretStr | None = None
    header: SecretStr | None = None
    allow_unauthenticated: bool = False
    max_body_bytes: int = Field(1_000_000, gt=0, le=20_000_000)
    kafka_timeout_s: float = Field(10.0, gt=0)
    # HTTPS: a PEM certificate (chain) and its key; both or neither.
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    # Requests served at once; beyond it the answer is 503 (MoEngage retries). Each may hold a body in memory.
    max_connections: int = Field(100, ge=1, le=100_000)
    # How long a request body may take to arrive: a slow sender cannot hold a connection and its buffer.
    read_timeout_s: float = Field(30.0, gt=0, le=600)

    @field_validator("tls_certfile", "tls_keyfile", mode="after")
    @classmethod
    def _tls_file_exists(cls, value: str | None) -> str | None:
        return KafkaSettings._file_exists(value)

    @model_validator(mode="after")
    def _tls_pair(self) -> IngestSettings:
        names = "FORWARDER_INGEST_TLS_CERTFILE and FORWARDER_INGEST_TLS_KEYFILE"
        _both_or_neither(self.tls_certfile, self.tls_keyfile, names)
        return self

    @field_validator("basic_auth", mode="after")
    @classmethod
    def _basic_auth_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _two_parts(value, "must be user:password")

    @field_validator("header", mode="after")
    @classmethod
    def _header_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _two_parts(value, "must be 'Name: value'")

    def require_authentication(self) -> None:
        """The ingest command's start-up rule: some credential, unless a demo says otherwise."""
        if not (self.basic_auth or self.header or self.allow_unauthenticated):
            raise SettingsError(
                "invalid settings:\n  FORWARDER_INGEST_BASIC_AUTH or FORWARDER_INGEST_HEADER: one is required; "
                "set FORWARDER_INGEST_ALLOW_UNAUTHENTICATED=true only for a local demo"
            )


class MoEngageSettings(BaseModel):
    """Where cohort members go: MoEngage's Cohort Sync API of one workspace. Required by ``cohorts worker``."""

    model_config = _part("MOENGAGE_")

    workspace_id: str | None = None
    data_api_key: SecretStr | None = None
    data_center: str = "01"
    api_url: str | None = None
    anonymous_field: str = Field("moe_anonymous_id", min_length=1, max_length=100)
    max_requests_per_minute: int = Field(300, ge=1, le=10_000)
    timeout_s: float = Field(10.0, gt=0, le=120)

    @field_validator("data_center", mode="before")
    @classmethod
    def _data_center(cls, value: object) -> object:
        text = str(value).strip()
        text = text.zfill(2) if text.isdigit() else text
        if text not in MOENGAGE_DATA_CENTERS:
            raise ValueError("must be one of 01, 02, 03, 04, 05, 06")
        return text

    @field_validator("workspace_id", mode="after")
    @classmethod
    def _workspace(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("data_api_key", mode="after")
    @classmethod
    def _key_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        return _not_blank(value)

    @field_validator("api_url", mode="after")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return AmplitudeSettings._url(value)

    @property
    def base_url(self) -> str:
        return self.api_url or f"https://api-{self.data_center}.moengage.com"


class CohortSettings(BaseModel):
    """The cohort sync: the webhook route of ``ingest``, the topic between it, ``cohorts pull`` and the worker, and
    how the cohort worker runs (its own ``COHORTS_*`` values: ``FORWARDER_*`` ones tune the forwarder only)."""

    model_config = _part("COHORTS_")

    webhook_path: str = Field("/amplitude/cohorts", pattern=r"^/")
    webhook_header: SecretStr | None = None
    topic: str = Field("amplitude-cohort-changes", min_length=1)
    dlq_topic: str = Field("amplitude-cohort-changes-dlq", min_length=1)
    status_topic: str = Field("amplitude-cohort-status", min_length=1)
    group_id: str = Field("amplitude-moengage-cohorts", min_length=1)
    anonymous_property: str = Field("moe_anonymous_id", min_length=1, max_length=200)
    segment_prefix: str = Field("[Amplitude] ", max_length=100)
    max_webhook_bytes: int = Field(5_000_000, gt=0, le=20_000_000)
    snapshot_chunk_members: int = Field(15_000, ge=1, le=50_000)
    web_host: str = "127.0.0.1"
    web_port: int = Field(6067, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    session_timeout_s: float = Field(45.0, ge=6, le=1800)
    commit_interval_s: float = Field(1.0, gt=0, le=60)
    stall_timeout_s: float = Field(120.0, ge=10, le=86_400)
    topic_replication: int = Field(3, ge=1, le=10)
    dlq_max_value_bytes: int = Field(900_000, gt=0, le=100 * 1024 * 1024)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return WorkerPart._upper(value)

    @field_validator("webhook_header", mode="after")
    @classmethod
    def _header_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return IngestSettings._header_shape(value)


class SettingsKind(BaseModel):
    """What one command reads: its fields are the parts it uses, and only those are validated."""

    model_config = ConfigDict(frozen=True)
    # A renamed setting still read, with a warning, for one release: new environment name -> old one.
    legacy_names: ClassVar[dict[str, str]] = {}

    @classmethod
    def parts(cls) -> dict[str, type[BaseModel]]:
        return {name: field.annotation for name, field in cls.model_fields.items()}  # type: ignore[misc]


class HasKafka(Protocol):
    """Whatever reaches the cluster: every kind with a ``kafka`` part."""

    @property
    def kafka(self) -> KafkaSettings: ...


class Settings(SettingsKind):
    """Every part: the whole of what the product reads (the settings table lists exactly these)."""

    kafka: KafkaSettings
    topics: TopicSettings
    amplitude: AmplitudeSettings
    worker: WorkerPart
    ingest: IngestSettings
    moengage: MoEngageSettings
    cohorts: CohortSettings
    state: StatePart
    properties: PropertiesPart


class ForwarderSettings(SettingsKind):
    """The forwarder half's commands (``replay``, ``replay-dlq``, ``report``): Kafka, topics, Amplitude, worker."""

    kafka: KafkaSettings
    topics: TopicSettings
    amplitude: AmplitudeSettings
    worker: WorkerPart
    properties: PropertiesPart

    def mapping_rules(self, replaying: bool = False) -> MappingRules:
        """``replaying``: ``replay``, ``replay-dlq``, ``backfill``: user properties only as ``$setOnce``."""
        user_properties = self.properties.user_property_rules()
        if replaying and user_properties is not None:
            user_properties = user_properties.for_replays()
        return MappingRules(
            selection=Selection.parse(self.worker.events),
            min_id_length=self.amplitude.min_id_length,
            max_message_bytes=self.worker.max_message_bytes,
            user_properties=user_properties,
            pii=self.properties.pii_rules(),
        )


class AmplitudeWithKey(AmplitudeSettings):
    api_key: SecretStr


class WorkerSettings(ForwarderSettings):
    """``worker``: the Amplitude key required."""

    amplitude: AmplitudeWithKey


class TransformSettings(SettingsKind):
    """``transform``: the user properties and PII rules, applied as the worker applies them."""

    properties: PropertiesPart


class OptionalKafka(KafkaSettings):
    bootstrap_servers: str | None = None  # type: ignore[assignment]


class BackfillSettings(ForwarderSettings):
    """``backfill`` reads files: Kafka is optional (dead letters go to a file without it)."""

    kafka: OptionalKafka
    state: StatePart


class IngestCommandSettings(SettingsKind):
    """``ingest``: the Streams route and, when its credential is set, the cohort webhook route it mounts."""

    kafka: KafkaSettings
    topics: TopicSettings
    worker: WorkerPart
    ingest: IngestSettings
    cohorts: CohortSettings


class TopicsSettings(SettingsKind):
    """``topics``: both halves' topics."""

    kafka: KafkaSettings
    topics: TopicSettings
    cohorts: CohortSettings


class CohortStatusSettings(SettingsKind):
    """``cohorts status``: the cohort half's topics only."""

    kafka: KafkaSettings
    cohorts: CohortSettings


class MoEngageWithKey(MoEngageSettings):
    workspace_id: str = Field(min_length=1)
    data_api_key: SecretStr


class CohortWorkerSettings(CohortStatusSettings):
    """``cohorts worker``: the MoEngage workspace and key required."""

    moengage: MoEngageWithKey
    legacy_names: ClassVar[dict[str, str]] = {
        f"COHORTS_{name}": f"FORWARDER_{name}"
        for name in ("SESSION_TIMEOUT_S", "COMMIT_INTERVAL_S", "STALL_TIMEOUT_S", "WEB_HOST", "LOG_LEVEL")
    } | {
        "COHORTS_TOPIC_REPLICATION": "FORWARDER_TOPIC_REPLICATION",
        "COHORTS_DLQ_MAX_VALUE_BYTES": "FORWARDER_DLQ_MAX_VALUE_BYTES",
    }


class AmplitudeWithSecret(AmplitudeSettings):
    api_key: SecretStr
    secret_key: SecretStr


class TaxonomySettings(SettingsKind):
    """``taxonomy``: the Dashboard API's key pair and the selection whose event types it checks."""

    amplitude: AmplitudeWithSecret
    worker: WorkerPart


class CohortPullSettings(CohortStatusSettings):
    """``cohorts pull``: Amplitude's export API needs the API key and the secret key."""

    amplitude: AmplitudeWithSecret
    # Its anonymous field names the members' second id in the snapshots.
    moengage: MoEngageSettings


def setting_names(kind: type[SettingsKind] = Settings) -> set[str]:
    """Every environment name the settings read: the settings table (docs/operations.md) lists exactly these."""
    names: set[str] = set()
    for part in kind.parts().values():
        generator = part.model_config.get("alias_generator")
        assert callable(generator)
        names.update(generator(name) for name in part.model_fields)
    return names


def _describe(error: ValidationError) -> list[str]:
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        message = problem["msg"]
        if not problem["loc"]:  # a rule across settings names them itself
            lines.append(message.removeprefix("Value error, "))
            continue
        if problem["type"] == "missing":
            message = "is required but not set"
        lines.append(f"{str(problem['loc'][0]).upper()}: {message}")
    return lines


K = TypeVar("K", bound=SettingsKind)
log = logging.getLogger("forwarder.settings")


def load_settings(kind: type[K]) -> K:
    """Settings from the environment, then ``FORWARDER_SETTINGS_FILE`` if set; the environment wins."""
    return settings_from(os.environ, kind)


def settings_from(environ: Mapping[str, str], kind: type[K]) -> K:
    values: dict[str, Any] = {}
    env_file = environ.get(SETTINGS_FILE_VARIABLE)
    if env_file:
        if not os.path.isfile(env_file):
            raise SettingsError(f"invalid settings:\n  {SETTINGS_FILE_VARIABLE}: file {env_file!r} does not exist")
        values.update({k.upper(): v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update({k.upper(): v for k, v in environ.items()})
    for new, old in kind.legacy_names.items():
        if new not in values and old in values:
            values[new] = values[old]
            log.warning(f"{old} tunes this command for one more release; set {new} instead")
    parts: dict[str, BaseModel] = {}
    problems: list[str] = []
    for name, part in kind.parts().items():
        try:
            parts[name] = part.model_validate(values)
        except ValidationError as exc:
            problems.extend(_describe(exc))
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    return kind.model_validate(parts)
