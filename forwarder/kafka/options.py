"""The faust settings every worker of the product shares: its delivery discipline (shared/spec/faust-delivery.md).

Manual acks are the agents' business; here: ``CrashingSupervisor`` (a failure never lets later offsets be acked),
``stream_wait_empty=False`` (a stuck request cannot block shutdown; the unacked work is replayed), the earliest
offset for a new group, acks from every in-sync replica, and the group's timing, which each worker takes from its
own settings (``FORWARDER_*`` for the forwarder, ``COHORTS_*`` for the cohort worker).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import mode

from forwarder.kafka.security import faust_credentials
from forwarder.settings import HasKafka


@dataclass(frozen=True)
class WorkerTiming:
    """Where a worker's web server listens and how its group keeps time."""

    web_host: str
    web_port: int
    # How long a dead worker keeps its partitions before the group moves them (Kafka's default 45 s).
    session_timeout_s: float
    # Commit acked offsets often: after a crash less is replayed (replays are harmless by design).
    commit_interval_s: float


def faust_options(settings: HasKafka, app_id: str, timing: WorkerTiming) -> dict[str, Any]:
    servers = settings.kafka.bootstrap_servers or ""
    return {
        "broker": [f"kafka://{server.strip()}" for server in servers.split(",")],
        "broker_credentials": faust_credentials(settings),
        "value_serializer": "raw",
        "key_serializer": "raw",
        "agent_supervisor": mode.CrashingSupervisor,
        "consumer_auto_offset_reset": "earliest",
        "stream_wait_empty": False,
        "topic_disable_leader": True,
        # faust creates a data directory even without tables; keep it out of the working directory.
        "datadir": os.path.join(tempfile.gettempdir(), f"forwarder-{app_id}-data"),
        "web_enabled": True,
        "web_bind": timing.web_host,
        "web_host": timing.web_host,
        "web_port": timing.web_port,
        # Only /metrics, /healthz and /readyz: faust's router and table pages answer anyone with the group's
        # assignment and a table's contents (the cohort worker's members), its graph and stats pages are debugging.
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "producer_acks": -1,
        "broker_session_timeout": timing.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, timing.session_timeout_s / 3),
        "broker_commit_interval": timing.commit_interval_s,
    }
