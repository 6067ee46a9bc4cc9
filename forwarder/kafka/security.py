"""Kafka connection security (SSL, SASL PLAIN / SCRAM) from the settings, for every client the project makes.

One place builds it, so the worker, the ingestion service, replay and topic tooling all connect alike.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forwarder.settings import HasKafka


def ssl_context(settings: HasKafka) -> ssl.SSLContext | None:
    if not settings.kafka.security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka.ssl_cafile)
    if settings.kafka.ssl_certfile:
        password = settings.kafka.ssl_key_password.get_secret_value() if settings.kafka.ssl_key_password else None
        context.load_cert_chain(settings.kafka.ssl_certfile, settings.kafka.ssl_keyfile, password)
    return context


def cleartext_warning(settings: HasKafka) -> str | None:
    """What an operator should hear about a connection without TLS that carries credentials, or None."""
    kafka = settings.kafka
    if kafka.security_protocol == "SASL_PLAINTEXT":
        return (
            "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: the SASL password and every record cross the network "
            "unencrypted; use SASL_SSL"
        )
    if kafka.security_protocol == "PLAINTEXT" and (kafka.sasl_username or kafka.sasl_password):
        return (
            "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT: they are not "
            "used, and records cross the network unencrypted; set SASL_SSL"
        )
    return None


def client_options(settings: HasKafka) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producer, consumer and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "security_protocol": settings.kafka.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka.sasl_mechanism
        options["sasl_plain_username"] = settings.kafka.sasl_username
        options["sasl_plain_password"] = (
            settings.kafka.sasl_password.get_secret_value() if settings.kafka.sasl_password else None
        )
    return options


def faust_credentials(settings: HasKafka) -> Any:
    import faust

    context = ssl_context(settings)
    if settings.kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka.sasl_username,
            password=settings.kafka.sasl_password.get_secret_value() if settings.kafka.sasl_password else None,
            mechanism=settings.kafka.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
