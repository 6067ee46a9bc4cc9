"""``forwarder ingest``: the HTTP endpoint MoEngage Streams posts to, with whatever routes are mounted beside it."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from forwarder import logs
from forwarder.command import Command, no_arguments, require_kafka
from forwarder.ingest.app import Mount
from forwarder.routes import route_names
from forwarder.settings import IngestCommandSettings, load_settings

# Other routes to serve, chosen from the settings (the command-line registry passes the cohort webhooks').
Mounts = Callable[[IngestCommandSettings], Sequence[Mount]]


def ingest_command(mounts: Mounts) -> Command:
    def run(args: argparse.Namespace) -> int:
        import uvicorn

        from forwarder.ingest.app import RefusedBodies, create_ingest_app
        from forwarder.intake.auth import Credentials
        from forwarder.intake.sink import KafkaSink
        from forwarder.kafka.security import client_options

        settings = load_settings(IngestCommandSettings)
        logs.setup(settings.worker.log_level)
        settings.ingest.require_authentication()
        _say_whether_kafka_answers(settings)
        sink = KafkaSink(
            client_options(settings),
            settings.topics.source_topic,
            settings.ingest.kafka_timeout_s,
            max_request_bytes=max(settings.ingest.max_body_bytes, settings.cohorts.max_webhook_bytes) + 64 * 1024,
        )
        app = create_ingest_app(
            sink,
            Credentials.of(settings.ingest),
            settings.ingest.path,
            settings.ingest.max_body_bytes,
            RefusedBodies(settings.topics.dlq_topic, settings.topics.dlq_max_value_bytes),
            mounts(settings),
            read_timeout_s=settings.ingest.read_timeout_s,
            routes=route_names(settings.worker.routes_file),
        )
        ingest = settings.ingest
        uvicorn.run(
            app,
            host=ingest.host,
            port=ingest.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(settings.worker.shutdown_deadline_s),
            limit_concurrency=ingest.max_connections,
            ssl_certfile=ingest.tls_certfile,
            ssl_keyfile=ingest.tls_keyfile,
        )
        return 0

    return Command(no_arguments, run)


def _say_whether_kafka_answers(settings: IngestCommandSettings) -> None:
    """The Kafka part of ``forwarder check``, said at start. Ingest starts anyway: while Kafka cannot be used,
    ``/readyz`` answers 503 and batches get 503, which MoEngage retries."""
    import logging

    from forwarder.kafka.admin import KafkaUnavailable

    try:
        require_kafka(settings, timeout_s=10)
    except KafkaUnavailable as exc:
        logging.getLogger("forwarder.ingest").warning(
            f"{exc}; starting anyway: /readyz answers 503 until Kafka can be used"
        )
