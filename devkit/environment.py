"""The environment of a ``forwarder worker`` process that the demo, the benchmarks and the tests start."""

from __future__ import annotations

import os


def worker_environment(
    servers: str,
    amplitude_url: str,
    source_topic: str,
    group: str,
    dlq_topic: str,
    api_key: str,
    **extra: str,
) -> dict[str, str]:
    """The environment of a ``forwarder worker`` process the demo, the benchmark or a test starts. Its ledger
    topic is named after its source topic (``<source>-ledger``), so runs that share a broker keep their counts
    apart."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": servers,
        "FORWARDER_SOURCE_TOPIC": source_topic,
        "FORWARDER_LEDGER_TOPIC": f"{source_topic}-ledger",
        "FORWARDER_DLQ_TOPIC": dlq_topic,
        "FORWARDER_GROUP_ID": group,
        "AMPLITUDE_API_KEY": api_key,
        "AMPLITUDE_API_URL": amplitude_url,
        **extra,
    }


# Two local projects and a default route (``tests/worker/test_routes.py``, ``bench.routes_outage``): EU and US each
# with its key's variable (``EU_KEY``, ``US_KEY``) and its service's URL; ``rest`` takes every other app.
TWO_PROJECTS_ROUTES = """
[routes.eu]
app_names = ["Shop EU"]
amplitude_api_key_env = "EU_KEY"
api_url = "{eu}"

[routes.us]
app_names = ["Shop US"]
amplitude_api_key_env = "US_KEY"
api_url = "{us}"

[routes.rest]
default = true
"""
