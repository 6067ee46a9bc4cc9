"""``forwarder topics``: create the source, retry, dead-letter, ledger and cohort topics, or report how they drifted.

Idempotent: a missing topic is created; an existing one is compared with the settings and left alone
unless ``--apply`` is given (configs altered, partitions added; partitions are never removed and the
replication factor is only reported, since Kafka changes it by reassignment, not by config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from forwarder.kafka.admin import Connection, create_topic, options_of
from forwarder.settings import CohortSettings, TopicSettings

HOUR_MS = 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str]


class BothHalvesTopics(Protocol):
    """``TopicsSettings``, or the whole ``Settings`` (``forwarder check``)."""

    @property
    def topics(self) -> TopicSettings: ...
    @property
    def cohorts(self) -> CohortSettings: ...


def desired_topics(settings: BothHalvesTopics) -> list[TopicSpec]:
    topics = settings.topics
    # Every topic: with the producers' acks=all, a write is acknowledged only once this many replicas have it (the
    # broker default, 1, means the leader alone).
    insync = {"min.insync.replicas": str(topics.min_insync_replicas)}

    def spec(name: str, retention_hours: float) -> TopicSpec:
        config = {"cleanup.policy": "delete", "retention.ms": str(int(retention_hours * HOUR_MS)), **insync}
        return TopicSpec(name, topics.topic_partitions, topics.topic_replication, config)

    # One partition: the report reads the ledger in the order it was written; its records are small (one per run).
    # Compacted, so a run re-processed with the same range replaces its record; deleted after its retention.
    ledger = TopicSpec(
        topics.ledger_topic,
        1,
        topics.topic_replication,
        {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(int(topics.ledger_retention_hours * HOUR_MS)),
            **insync,
        },
    )
    cohorts = settings.cohorts
    # One record per cohort (and per cohort pulled), read whole by ``cohorts status``: compacted, kept.
    cohort_status = TopicSpec(
        cohorts.status_topic, 1, topics.topic_replication, {"cleanup.policy": "compact", **insync}
    )
    return [
        spec(topics.source_topic, topics.source_retention_hours),
        spec(topics.retry_topic, topics.retry_retention_hours),
        spec(topics.dlq_topic, topics.dlq_retention_hours),
        ledger,
        # The cohort sync: its changes and snapshots (as long as the source's), their dead letters, the status.
        spec(cohorts.topic, topics.source_retention_hours),
        spec(cohorts.dlq_topic, topics.dlq_retention_hours),
        cohort_status,
    ]


class TopicsError(Exception):
    """The topics cannot be made as configured: one line that names the setting and the fix."""


async def reconcile(
    connection: Connection, specs: list[TopicSpec], apply: bool, create: bool = True
) -> tuple[list[str], bool]:
    """(report lines, whether drift remains). Raises ``TopicsError`` when the cluster cannot hold the topics.
    ``create=False`` (``forwarder check``): a missing topic is reported as drift, not created."""
    admin = AIOKafkaAdminClient(**options_of(connection))
    await admin.start()
    lines: list[str] = []
    drift_remains = False
    try:
        # list_topics, not describe_topics: asking a broker with auto.create.topics.enable about a missing
        # topic creates it with the broker's defaults.
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        brokers = len((await admin.describe_cluster())["brokers"])
        if create and (too_wide := [s for s in missing if s.replication > brokers]):
            raise TopicsError(
                f"FORWARDER_TOPIC_REPLICATION={too_wide[0].replication} but the cluster has {brokers} broker(s); "
                f"set FORWARDER_TOPIC_REPLICATION to at most {brokers} (1 for the local broker) and run again"
            )
        present = [s.name for s in specs if s.name in existing]
        described = {t["topic"]: t for t in await admin.describe_topics(present)} if present else {}
        for spec in specs:
            topic = described.get(spec.name)
            if topic is None and not create:
                lines.append(f"missing {spec.name}")
                drift_remains = True
                continue
            if topic is None:
                await create_topic(
                    admin, NewTopic(spec.name, spec.partitions, spec.replication, topic_configs=spec.config)
                )
                lines.append(
                    f"created {spec.name}: {spec.partitions} partitions, replication {spec.replication}, "
                    + ", ".join(f"{k}={v}" for k, v in spec.config.items())
                )
                continue
            differences, fixable_configs, more_partitions = await _compare(admin, spec, topic)
            if not differences:
                lines.append(f"ok {spec.name}")
                continue
            if apply and (fixable_configs or more_partitions):
                if fixable_configs:
                    # AlterConfigs replaces the topic's whole set of overrides with the one given: the spec
                    # lists every override this project manages.
                    await admin.alter_configs(
                        [ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=spec.config)]
                    )
                if more_partitions:
                    await admin.create_partitions({spec.name: NewPartitions(spec.partitions)})
                unfixable = [d for d in differences if d.startswith("replication")]
                lines.append(f"updated {spec.name}: " + "; ".join(d for d in differences if d not in unfixable))
                if unfixable:
                    lines.append(f"drift {spec.name}: " + "; ".join(unfixable) + " (change it by reassignment)")
                    drift_remains = True
            else:
                lines.append(f"drift {spec.name}: " + "; ".join(differences))
                drift_remains = True
    finally:
        await admin.close()
    return lines, drift_remains


async def _compare(admin: AIOKafkaAdminClient, spec: TopicSpec, topic: dict[str, Any]) -> tuple[list[str], bool, bool]:
    differences: list[str] = []
    partitions = len(topic["partitions"])
    more_partitions = partitions < spec.partitions
    if partitions != spec.partitions:
        note = "" if more_partitions else " (partitions are never removed)"
        differences.append(f"partitions {partitions} (want {spec.partitions}){note}")
    replication = len(topic["partitions"][0]["replicas"])
    if replication != spec.replication:
        differences.append(f"replication {replication} (want {spec.replication})")
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name)])
    current = {
        entry["config_names"]: entry["config_value"]
        for response in responses
        for resource in response.to_object()["resources"]
        for entry in resource["config_entries"]
    }
    fixable = False
    for key, want in spec.config.items():
        if current.get(key) != want:
            differences.append(f"{key} {current.get(key)} (want {want})")
            fixable = True
    return differences, fixable, more_partitions
