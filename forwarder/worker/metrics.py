"""Prometheus metrics of the forwarder worker, in one registry per process."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from forwarder.core.counting import OutcomeCounter
from forwarder.kafka.order_metrics import OffsetMetrics

# Label children of forwarder_events_total kept for reuse; past this many, further ones are looked up each time.
_MAX_CHILDREN = 10_000


class Metrics(OffsetMetrics):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        super().__init__(self.registry)
        self.events = Counter(
            "forwarder_events_total",
            "Events read, by final outcome (delivered, filtered, dropped, dead_lettered), reason, event code and "
            "route (Amplitude project).",
            ["outcome", "reason", "event_code", "route"],
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
            "Messages still to be read and finished: highwater - max(committed offset, log start offset).",
            ["topic", "partition"],
            registry=self.registry,
        )

        self.events_repaired = Counter(
            "forwarder_events_repaired",
            "Events kept after repairing their input (invalid_utf8: bytes that are not UTF-8 became U+FFFD).",
            ["reason"],
            registry=self.registry,
        )
        self.event_warnings = Counter(
            "forwarder_event_warnings",
            "Events sent with something a user would want to know (duplicate_insert_id, missing_campaign_id, "
            "implausible_time, cut_string, id_not_scalar, id_too_short).",
            ["kind", "event_code"],
            registry=self.registry,
        )
        self.oldest_unprocessed_age = Gauge(
            "forwarder_oldest_unprocessed_age_seconds",
            "Age (by record timestamp) of the oldest record read and not yet final; 0 when none is in hand.",
            ["topic", "partition"],
            registry=self.registry,
        )
        self._routes_and_personal_data()
        self._event_children: dict[tuple[str, str, str, str], Any] = {}

    def _routes_and_personal_data(self) -> None:
        self.route_parked = Gauge(
            "forwarder_route_parked",
            "1 while a route's events go to the retry topic because its Amplitude project keeps failing (parked, "
            "or draining behind what was parked); 0 while it flows.",
            ["route"],
            registry=self.registry,
        )
        self.pii = Counter(
            "forwarder_pii",
            "Events whose property (event or user property) a FORWARDER_PII rule dropped or hashed, by action.",
            ["property", "action"],
            registry=self.registry,
        )

    def observe_request(self, status: str, seconds: float) -> None:
        self.request_seconds.labels(status=status).observe(seconds)

    def add_outcomes(self, outcomes: OutcomeCounter) -> None:
        """One label lookup per (outcome, reason, code, route) of a batch, not one per event; the children found
        are kept (a few hundred on a real stream; the cache stops growing at ``_MAX_CHILDREN``)."""
        children = self._event_children
        for labels, count in outcomes.by_labels.items():
            child = children.get(labels)
            if child is None:
                child = self.events.labels(*labels)
                if len(children) < _MAX_CHILDREN:
                    children[labels] = child
            child.inc(count)

    def delivered_now(self) -> None:
        self.last_delivery.set(time.time())

    def render(self) -> bytes:
        return generate_latest(self.registry)
