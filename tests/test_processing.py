"""A batch of Kafka messages -> final outcomes, without a broker (delivery against the local service)."""

from __future__ import annotations

import httpx
import orjson
from pydantic import SecretStr

from forwarder.amplitude.client import AmplitudeClient
from forwarder.amplitude.delivery import Deliverer
from forwarder.amplitude.limits import HTTP_V2
from forwarder.core import MappingRules
from forwarder.kafka.dead_letters import DeadLetterWriter, SourceRef
from forwarder.local.amplitude import AmplitudeService
from forwarder.local.traffic import streams_requests
from forwarder.metrics import Metrics
from forwarder.processing import BatchProcessor, SourceMessage


class Letters(DeadLetterWriter):
    """Keeps what would be written to the dead-letter topic."""

    def __init__(self) -> None:
        self.records: list[object] = []

    async def write(self, records: list) -> None:  # type: ignore[type-arg]
        self.records.extend(records)


def messages(count: int) -> list[SourceMessage]:
    values = [orjson.dumps(body) for body in streams_requests(count, per_request=100, seed=7)]
    values += [b"not json", orjson.dumps({"event_code": "MOE_EMAIL_SENT", "uid": "customer-1", "event_time": "x"})]
    return [SourceMessage(SourceRef("t", 0, offset, None), value) for offset, value in enumerate(values)]


def processor(service: AmplitudeService, metrics: Metrics) -> BatchProcessor:
    client = AmplitudeClient(
        "http://amplitude.local/2/httpapi", SecretStr("k"), transport=httpx.ASGITransport(app=service.app)
    )

    async def no_wait(_seconds: float) -> None:
        return None

    return BatchProcessor(MappingRules(), Deliverer(client, HTTP_V2, no_wait), Letters(), metrics)


async def test_mapping_in_slices_gives_the_same_outcomes_as_mapping_at_once() -> None:
    batch = processor(AmplitudeService(), Metrics())
    at_once = batch.prepare(messages(2000))
    sliced = await batch.prepare_yielding(messages(2000), slice_bytes=4096)
    assert sliced.summary.as_dict() == at_once.summary.as_dict()
    assert [p.outcome.encoded for p in sliced.pending] == [p.outcome.encoded for p in at_once.pending]
    assert len(sliced.dead) == len(at_once.dead) == 2
    assert sliced.outcomes == at_once.outcomes


async def test_every_event_read_is_counted_once_under_its_final_outcome() -> None:
    service, metrics = AmplitudeService(), Metrics()
    batch = processor(service, metrics)
    summary = await batch.process(messages(2000))
    dropped, filtered = sum(summary.dropped.values()), sum(summary.filtered.values())
    dead = sum(summary.dead_lettered.values())
    assert summary.read == summary.delivered + dropped + filtered + dead == 2002
    assert summary.delivered == service.recorder.accepted > 0
    by_outcome: dict[str, float] = {}
    for sample in next(iter(metrics.events.collect())).samples:
        if sample.name.endswith("_total"):
            outcome = sample.labels["outcome"]
            by_outcome[outcome] = by_outcome.get(outcome, 0) + sample.value
    assert by_outcome.get("delivered") == summary.delivered
    assert sum(by_outcome.values()) == summary.read
