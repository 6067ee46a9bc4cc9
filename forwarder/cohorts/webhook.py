"""Amplitude's Cohort Webhooks destination: a route that ``forwarder ingest`` mounts beside the Streams route.

Stored as received, keyed by cohort id (one cohort's changes keep their order); a repeated ``message_id`` is stored
again and changes nothing downstream (the worker's state is per member).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from starlette.requests import Request
from starlette.routing import BaseRoute

from forwarder.cohorts.members import PayloadError, parse_webhook
from forwarder.cohorts.records import KIND_HEADER, WEBHOOK
from forwarder.intake.auth import Credentials
from forwarder.intake.door import Door, IntakeMetrics, Refused, intake_route
from forwarder.intake.sink import KafkaSink
from forwarder.settings import CohortSettings


@dataclass(frozen=True)
class CohortRoute:
    """``path``, its header credential, the cohorts topic."""

    path: str
    credentials: Credentials
    topic: str
    max_body_bytes: int = 5_000_000

    @classmethod
    def of(cls, settings: CohortSettings) -> CohortRoute | None:
        """None while ``COHORTS_WEBHOOK_HEADER`` is unset: the route is off without its credential."""
        if settings.webhook_header is None:
            return None
        credentials = Credentials.parse(None, settings.webhook_header.get_secret_value())
        return cls(settings.webhook_path, credentials, settings.topic, settings.max_webhook_bytes)

    def route(self, sink: KafkaSink, metrics: IntakeMetrics) -> BaseRoute:
        users = Counter(
            "ingest_cohort_users_total", "Users of cohort webhook changes stored in Kafka.", registry=metrics.registry
        )

        async def store(body: bytes, request: Request) -> dict[str, Any]:
            try:
                change = parse_webhook(body)
            except PayloadError as exc:
                raise Refused(400, "invalid_webhook", str(exc)) from None
            headers = [(KIND_HEADER, WEBHOOK), ("ingested_at", str(int(time.time() * 1000)).encode())]
            await sink.store_record(self.topic, change.cohort_id.encode(), body, headers)
            users.inc(len(change.users))
            return {"status": "stored", "users": len(change.users)}

        return intake_route(self.path, Door(self.credentials, self.max_body_bytes), store, sink, metrics)
