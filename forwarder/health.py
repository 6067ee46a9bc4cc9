"""What a worker reports to orchestrators: alive unless stalled, and ready only while it is consuming.

Both workers use it; ``upstream`` names the service each delivers to (Amplitude, MoEngage).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Health:
    # The service the worker delivers to: its readiness names it ("amplitude_last_answer").
    upstream: str = "amplitude"
    consuming: bool = False
    # Set when the upstream refused the configuration (invalid key): not ready, and says why.
    fatal: str | None = None
    # The upstream's last answer: an HTTP status, or "timeout" / "connection_error".
    upstream_status: str | None = None
    # Set by the watchdog while partitions have lag and nothing is taken (the reason, for /healthz).
    stalled: str | None = None
    # Set by the watchdog while a partition's commit cannot pass an unacknowledged offset (the reason).
    commit_blocked: str | None = None
    # Shutting down: an idle agent is expected then, not a stall.
    stopping: bool = False
    # Routes whose events wait in the retry topic while their project keeps failing (the forwarder's routes).
    parked_routes: list[str] = field(default_factory=list)

    def upstream_answered(self, status: str) -> None:
        self.upstream_status = status

    def liveness(self) -> tuple[dict[str, Any], bool]:
        """Alive unless stalled or its commit is blocked: an orchestrator restarts a worker that is running but
        not reading, or reading but never committing (the restart reads again from the commit)."""
        if self.stalled:
            return {"status": "stalled", "reason": self.stalled}, False
        if self.commit_blocked:
            return {"status": "commit blocked", "reason": self.commit_blocked}, False
        return {"status": "alive"}, True

    def readiness(self) -> tuple[dict[str, Any], bool]:
        if self.fatal:
            return {"status": "failed", "reason": self.fatal}, False
        if not self.consuming:
            return {"status": "starting"}, False
        if self.upstream_status in ("timeout", "connection_error") and not self.parked_routes:
            # Delivery is paused and retrying; nothing is lost, but an operator should see it.
            return {"status": f"{self.upstream} unreachable", "last_answer": self.upstream_status}, False
        body: dict[str, Any] = {"status": "ready", f"{self.upstream}_last_answer": self.upstream_status}
        if self.parked_routes:
            # Ready: the other routes flow; these routes' events wait on the retry topic, nothing is lost.
            body["parked_routes"] = self.parked_routes
        return body, True


def serve_health(app: Any, health: Health, metrics_body: Callable[[], bytes]) -> None:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a faust app's web server (the forwarder's and the cohort
    worker's)."""

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics_body(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")  # type: ignore[untyped-decorator]
    async def liveness(web: Any, request: Any) -> Any:
        body, alive = health.liveness()
        return web.json(body, status=200 if alive else 503)

    @app.page("/readyz")  # type: ignore[untyped-decorator]
    async def readiness(web: Any, request: Any) -> Any:
        body, ready = health.readiness()
        return web.json(body, status=200 if ready else 503)
