"""The faust settings every worker of the product shares: its delivery discipline (shared/spec/faust-delivery.md).

Manual acks are the agents' business; here: ``CrashingSupervisor`` (a failure never lets later offsets be acked),
``stream_wait_empty=False`` (a stuck request cannot block shutdown; the unacked work is replayed), the earliest
offset for a new group, acks from every in-sync replica, and the group's timing from the settings.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import mode

from forwarder.kafka.security import faust_credentials
from forwarder.settings import Settings


def faust_options(settings: Settings, app_id: str, web_port: int) -> dict[str, Any]:
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
        "web_bind": settings.worker.web_host,
        "web_host": settings.worker.web_host,
        "web_port": web_port,
        "producer_acks": -1,
        # How long a dead worker keeps its partitions before the group moves them (Kafka's default 45 s).
        "broker_session_timeout": settings.worker.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.worker.session_timeout_s / 3),
        # Commit acked offsets often: after a crash less is replayed (replays are harmless by design).
        "broker_commit_interval": settings.worker.commit_interval_s,
    }
