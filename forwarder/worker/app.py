"""The Faust worker: one agent that reads the source topic and acknowledges only final outcomes.

Delivery discipline (shared/spec/faust-delivery.md): ``noack_take`` (``take`` acks failed batches),
one agent instance so acks stay in offset order, ``CrashingSupervisor`` so a failure never lets later
events be acked, ``stream_wait_empty=False`` so a stuck POST cannot block shutdown (the unacked batch is
replayed after restart). Every event of a batch is acked only after its outcome is final.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import mode
from aiokafka import AIOKafkaProducer

from forwarder.amplitude.client import AmplitudeClient
from forwarder.amplitude.limits import LIMITS
from forwarder.dead_letters import DeadLetterWriter, SourceRef
from forwarder.delivery import Deliverer, FatalDeliveryError
from forwarder.metrics import Metrics
from forwarder.settings import Settings
from forwarder.worker.health import Health
from forwarder.worker.processing import BatchProcessor, SourceMessage

log = logging.getLogger("forwarder.worker")


async def _sleep(seconds: float) -> bool:
    # Cancellation (worker stop) interrupts this; the batch is then left unacked and replayed.
    await asyncio.sleep(seconds)
    return True


def create_app(settings: Settings, metrics: Metrics | None = None) -> faust.App:
    metrics = metrics or Metrics()
    health = Health()
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        agent_supervisor=mode.CrashingSupervisor,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        topic_disable_leader=True,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        producer_acks=-1,
        # Commit acked offsets often: after a crash less is replayed (insert_id makes replays harmless).
        broker_commit_interval=1.0,
    )
    source = app.topic(settings.source_topic, value_type=bytes, key_type=bytes)
    rules = settings.mapping_rules()

    @app.agent(source, concurrency=1)
    async def forward(stream: Any) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            # Headers ride along with the value: leave them room.
            max_request_size=settings.dlq_max_value_bytes + 64 * 1024,
        )
        await producer.start()
        client = AmplitudeClient(
            settings.amplitude_endpoint(),
            settings.amplitude_api_key,
            timeout_s=settings.amplitude_timeout_s,
            min_id_length=settings.amplitude_min_id_length if settings.amplitude_min_id_length < 5 else None,
            observer=metrics.observe_request,
        )
        deliverer = Deliverer(client, LIMITS[settings.amplitude_api], _sleep)
        dead_letters = DeadLetterWriter(producer, settings.dlq_topic, settings.dlq_max_value_bytes)
        processor = BatchProcessor(rules, deliverer, dead_letters, metrics)
        health.consuming = True
        try:
            async for batch in stream.noack_take(settings.batch_max_messages, within=settings.batch_window_s):
                messages = [
                    SourceMessage(
                        SourceRef(e.message.topic, e.message.partition, e.message.offset, e.message.key),
                        e.message.value,
                    )
                    for e in batch
                ]
                try:
                    await processor.process(messages)
                except FatalDeliveryError as exc:
                    health.fatal = str(exc)
                    log.error(
                        "delivery stopped: fatal configuration error; nothing past the last delivered batch "
                        "is committed",
                        extra={"fields": {"error": str(exc), "first_unacked_offset": messages[0].ref.offset}},
                    )
                    raise
                for event in batch:
                    event.ack()
        finally:
            health.consuming = False
            await client.aclose()
            await producer.stop()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def liveness(web: Any, request: Any) -> Any:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readiness(web: Any, request: Any) -> Any:
        body, ready = health.readiness()
        return web.json(body, status=200 if ready else 503)

    return app


def run_worker(settings: Settings) -> None:
    from forwarder.logs import logging_config

    app = create_app(settings)
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level),
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
