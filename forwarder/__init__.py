"""MoEngage Streams -> Kafka -> Amplitude event forwarder."""

__version__ = "0.1.0"
