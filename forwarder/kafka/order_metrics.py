"""The metrics both workers share: what the offset guard and the commit watch report."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from forwarder.kafka.order import CommitCheck


class OffsetMetrics:
    """What the offset guard and the commit watch report (``forwarder.kafka.order``), for both workers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["topic", "partition"]
        self.offsets_lost = Counter(
            "forwarder_offsets_lost",
            "Offsets Kafka deleted (retention) before the worker read them; each range is in the dead-letter topic.",
            labels,
            registry=registry,
        )
        self.offset_gaps = Counter(
            "forwarder_offset_gaps",
            "Times the consumer handed over a record past offsets it skipped; each was read again (or, below the "
            "log start, counted in forwarder_offsets_lost_total).",
            labels,
            registry=registry,
        )
        self.commit_blocked = Gauge(
            "forwarder_commit_blocked",
            "1 while acknowledged offsets wait above an unacknowledged one for FORWARDER_STALL_TIMEOUT_S.",
            labels,
            registry=registry,
        )

        self.stalled = Gauge(
            "forwarder_stalled",
            "1 while a partition has lag and none of its messages was taken for the stall timeout.",
            registry=registry,
        )

    def show_commits(self, check: CommitCheck) -> None:
        for (topic, partition), value in check.gauge.items():
            self.commit_blocked.labels(topic, str(partition)).set(value)
