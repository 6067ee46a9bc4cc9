"""Prometheus metrics of the worker, in one registry per process."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from forwarder.core.outcomes import Dropped, Filtered, Forwarded, Invalid, Outcome


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "forwarder_events_total",
            "Events read, by final outcome (delivered, filtered, dropped, dead_lettered), reason and event code.",
            ["outcome", "reason", "event_code"],
            registry=self.registry,
        )
        self.messages = Counter("forwarder_messages_total", "Kafka messages read.", registry=self.registry)
        self.batch_events = Histogram(
            "forwarder_batch_events",
            "Events per delivered batch.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "forwarder_amplitude_request_seconds",
            "Amplitude request latency by HTTP status (or error kind).",
            ["status"],
            registry=self.registry,
        )
        self.retries = Counter("forwarder_retries_total", "Amplitude requests retried.", registry=self.registry)
        self.throttled = Counter(
            "forwarder_throttled_events_total", "Events Amplitude throttled (429).", registry=self.registry
        )
        self.dead_letters = Counter(
            "forwarder_dead_letters_total",
            "Records written to the dead-letter topic.",
            registry=self.registry,
        )
        self.last_delivery = Gauge(
            "forwarder_last_delivery_timestamp_seconds",
            "Unix time of the last batch Amplitude accepted.",
            registry=self.registry,
        )
        self.rebalances = Counter(
            "forwarder_partition_assignments_total",
            "Partition assignments this worker received (1 per start when nothing rebalances).",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "forwarder_consumer_lag",
            "Messages behind the end of the partition.",
            ["topic", "partition"],
            registry=self.registry,
        )

    def observe_request(self, status: str, seconds: float) -> None:
        self.request_seconds.labels(status=status).observe(seconds)

    def count(self, outcome: Outcome, delivered: bool, dead_reason: str | None = None) -> None:
        code = outcome.code or ""
        if dead_reason is not None:
            self.events.labels("dead_lettered", dead_reason, code).inc()
        elif isinstance(outcome, Forwarded):
            self.events.labels("delivered" if delivered else "dead_lettered", "", code).inc()
        elif isinstance(outcome, Filtered):
            self.events.labels("filtered", outcome.reason, code).inc()
        elif isinstance(outcome, Dropped):
            self.events.labels("dropped", outcome.reason, code).inc()
        elif isinstance(outcome, Invalid):
            self.events.labels("dead_lettered", outcome.reason, code).inc()

    def delivered_now(self) -> None:
        self.last_delivery.set(time.time())

    def render(self) -> bytes:
        return generate_latest(self.registry)
